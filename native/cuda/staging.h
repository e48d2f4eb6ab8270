// The stream of a device and the small host↔device copies of the CUDA stages (cuda::Experts,
// cuda::Router): the tensors are device memory, read and written in place; what the
// stages still copy is host data of this version (the routing decisions, the assignment lists, the
// GEMMs' tile lists; layer/stages.h). Errors are Error(Device) naming the owner and the buffer.
// Host code only.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>

#include "cuda_check.h"
#include "runtime_calls.h"

namespace moekit::cuda {

// The stream moekit works on for the current device (DESIGN §2b: work on a device is ordered on
// that device's stream): created non-blocking on a device's first use and kept for the life of the
// process, so every stage and op enqueues there and their work is ordered without events, and no
// call creates a stream of its own.
inline cudaStream_t deviceStream(const std::string& owner) {
  static std::mutex mutex;
  static std::map<int, cudaStream_t> streams;
  int device = 0;
  checkCuda(cudaGetDevice(&device), owner + ": cudaGetDevice");
  std::lock_guard<std::mutex> lock(mutex);
  cudaStream_t& stream = streams[device];
  if (!stream) checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), owner + ": cudaStreamCreateWithFlags");
  return stream;
}

class StagingStream {
 public:
  // Touches no device until open(): an owner validates its arguments first.
  explicit StagingStream(const char* owner) : owner_(owner) {}
  StagingStream(const StagingStream&) = delete;
  StagingStream& operator=(const StagingStream&) = delete;

  // Takes the current device's stream (deviceStream).
  void open() { stream_ = deviceStream(owner_); }
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
