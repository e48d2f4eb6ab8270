// The device arrays a CUDA stage keeps between calls or within one: memory of the current
// device's pool (runtime_calls.h mallocAsync), ordered on the device's stream (staging.h
// deviceStream), so a buffer released and reserved again in the next step takes the pool's idle
// block instead of a device allocation. Host code only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "cuda_check.h"
#include "runtime_calls.h"
#include "staging.h"

namespace moekit::cuda {

// An array of T that only grows: reserve(n) keeps the memory when it already holds n elements,
// otherwise returns it and takes n (the contents are NOT kept). release() returns the memory to
// the pool (stream-ordered: after the work enqueued so far), as does destruction.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // `what` names the buffer in the error ("cudaMallocAsync of xp (… bytes) failed: …").
  T* reserve(size_t n, const char* what) {
    if (n <= capacity_) return data_;
    release();
    stream_ = deviceStream("cuda stage buffer");
    checkCuda(mallocAsync(reinterpret_cast<void**>(&data_), n * sizeof(T), stream_),
              std::string("cudaMallocAsync of ") + what + " (" + std::to_string(n * sizeof(T)) + " bytes)");
    capacity_ = n;
    return data_;
  }
  T* get() const { return data_; }
  void release() {
    if (data_) freeAsync(data_, stream_);
    data_ = nullptr;
    capacity_ = 0;
  }

 private:
  T* data_ = nullptr;
  size_t capacity_ = 0;
  cudaStream_t stream_ = nullptr;
};

}  // namespace moekit::cuda
