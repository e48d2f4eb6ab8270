// The stream and the host↔device copies of a host-staged CUDA stage (cuda::Experts, cuda::Router,
// routeTopK, staged_ops): this version's tensors live in host memory, so each stage uploads what it
// reads, runs its kernels on a stream of its own and downloads what it writes. Errors are
// Error(Device) naming the owner and the buffer. Host code only.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "cuda_check.h"
#include "runtime_calls.h"

namespace moekit::cuda {

class StagingStream {
 public:
  // Touches no device until open(): an owner validates its arguments first.
  explicit StagingStream(const char* owner) : owner_(owner) {}
  ~StagingStream() {
    if (stream_) cudaStreamDestroy(stream_);
  }
  StagingStream(const StagingStream&) = delete;
  StagingStream& operator=(const StagingStream&) = delete;

  // Creates the non-blocking stream on the current device.
  void open() {
    checkCuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), owner_ + ": cudaStreamCreateWithFlags");
  }
  cudaStream_t get() const { return stream_; }

  void upload(void* device, const void* host, size_t bytes, const char* what) {
    copy(device, host, bytes, cudaMemcpyHostToDevice, what, " to the device");
  }
  void download(void* host, const void* device, size_t bytes, const char* what) {
    copy(host, device, bytes, cudaMemcpyDeviceToHost, what, " to the host");
  }
  void synchronize(const char* what) { checkCuda(streamSynchronize(stream_), owner_ + ": " + what); }

 private:
  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* what, const char* where) {
    if (bytes == 0) return;
    checkCuda(copyAsync(dst, src, bytes, kind, stream_), owner_ + ": cudaMemcpyAsync of " + what + where);
  }

  std::string owner_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace moekit::cuda
