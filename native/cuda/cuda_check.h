// CUDA runtime errors → moekit::Error(Device) (DESIGN §4), and the device buffers the CUDA stages
// keep across calls. Host code only; included by the .cu files of native/cuda (compiled by nvcc,
// or by g++ against the SIMT emulator, where cuda_runtime.h is the emulated runtime).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "../core/errors.h"
#include "runtime_calls.h"

namespace moekit::cuda {

// Throws Error(Device, "<what> failed: <CUDA's message> (<error name>)") when err is not success.
inline void checkCuda(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return;
  throw Error(ErrorKind::Device, what + " failed: " + cudaGetErrorString(err) + " (" +
                                     cudaGetErrorName(err) + ")");
}

// A kernel launch's error (moekit::launch returns it) → Error(Device, "launch of <kernel> failed: …").
inline void checkLaunch(cudaError_t err, const char* kernel) {
  checkCuda(err, std::string("launch of ") + kernel);
}

// A cudaMalloc'd array of T that only grows: reserve(n) keeps the allocation when it already holds
// n elements, otherwise frees it and allocates n (the contents are NOT kept). Freed on destruction.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() {
    if (data_) deviceFree(data_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // `what` names the buffer in the error ("cuda::Experts: cudaMalloc of xp (… bytes)").
  T* reserve(size_t n, const char* what) {
    if (n <= capacity_) return data_;
    if (data_) deviceFree(data_);
    data_ = nullptr;
    capacity_ = 0;
    checkCuda(deviceMalloc(reinterpret_cast<void**>(&data_), n * sizeof(T)),
              std::string("cudaMalloc of ") + what + " (" + std::to_string(n * sizeof(T)) + " bytes)");
    capacity_ = n;
    return data_;
  }
  T* get() const { return data_; }

 private:
  T* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace moekit::cuda
