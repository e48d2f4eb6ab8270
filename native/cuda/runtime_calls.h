// The CUDA runtime calls moekit makes that move bytes between host and device, make the host
// wait, or allocate device memory — each the runtime's own function, counted in DeviceCounters
// (device_counters.h) when it succeeds. Code of native/cuda and native/comm calls these instead of
// the cuda* functions they wrap, so cuda.stats() sees every one. Host code only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "device_counters.h"

namespace moekit::cuda {

inline cudaError_t copyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  const cudaError_t err = cudaMemcpyAsync(dst, src, bytes, kind, stream);
  if (err == cudaSuccess) DeviceCounters::instance().copied(kind, bytes);
  return err;
}

// A blocking copy: the host waits for it (a synchronisation).
inline cudaError_t copyBlocking(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const cudaError_t err = cudaMemcpy(dst, src, bytes, kind);
  if (err == cudaSuccess) {
    DeviceCounters::instance().copied(kind, bytes);
    DeviceCounters::instance().synchronized();
  }
  return err;
}

// A blocking read of a __device__ variable (device→host, a synchronisation).
template <class T>
cudaError_t copyFromSymbol(void* dst, const T& symbol, size_t bytes) {
  const cudaError_t err = cudaMemcpyFromSymbol(dst, symbol, bytes);
  if (err == cudaSuccess) {
    DeviceCounters::instance().copied(cudaMemcpyDeviceToHost, bytes);
    DeviceCounters::instance().synchronized();
  }
  return err;
}

inline cudaError_t streamSynchronize(cudaStream_t stream) {
  const cudaError_t err = cudaStreamSynchronize(stream);
  DeviceCounters::instance().synchronized();
  return err;
}

inline cudaError_t deviceSynchronize() {
  const cudaError_t err = cudaDeviceSynchronize();
  DeviceCounters::instance().synchronized();
  return err;
}

inline cudaError_t deviceMalloc(void** pointer, size_t bytes) {
  const cudaError_t err = cudaMalloc(pointer, bytes);
  if (err == cudaSuccess) DeviceCounters::instance().allocated(*pointer, bytes);
  return err;
}

inline cudaError_t deviceFree(void* pointer) {
  DeviceCounters::instance().freed(pointer);
  return cudaFree(pointer);
}

inline cudaError_t mallocAsync(void** pointer, size_t bytes, cudaStream_t stream) {
  const cudaError_t err = cudaMallocAsync(pointer, bytes, stream);
  if (err == cudaSuccess) DeviceCounters::instance().allocated(*pointer, bytes);
  return err;
}

inline cudaError_t freeAsync(void* pointer, cudaStream_t stream) {
  DeviceCounters::instance().freed(pointer);
  return cudaFreeAsync(pointer, stream);
}

}  // namespace moekit::cuda
