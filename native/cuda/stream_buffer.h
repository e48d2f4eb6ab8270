// Scratch device memory of one launcher call, ordered on its stream: allocated from the device's
// memory pool (mallocAsync, runtime_calls.h) when constructed and returned to it with
// cudaFreeAsync when destroyed, so a launcher that returns before its kernels ran (nothing
// synchronises) still frees its scratch only after them, and the next call reuses the pool's
// memory instead of allocating. Host code only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "cuda_check.h"
#include "runtime_calls.h"

namespace moekit::cuda {

template <class T>
class StreamBuffer {
 public:
  // n elements (n = 0 allocates nothing and get() is null); `what` names the buffer in the error.
  StreamBuffer(size_t n, cudaStream_t stream, const char* what) : stream_(stream) {
    if (n == 0) return;
    checkCuda(mallocAsync(reinterpret_cast<void**>(&data_), n * sizeof(T), stream),
              std::string("cudaMallocAsync of ") + what + " (" + std::to_string(n * sizeof(T)) +
                  " bytes)");
  }
  ~StreamBuffer() {
    if (data_) freeAsync(data_, stream_);
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  T* get() const { return data_; }

 private:
  T* data_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace moekit::cuda
