// The CUDA runtime calls moekit makes that move bytes between host and device, make the host
// wait, or take device memory (all of it from the devices' memory pools) — each the runtime's own
// function, counted in DeviceCounters (device_counters.h) when it succeeds. Code of native/cuda and native/comm calls these instead of
// the cuda* functions they wrap, so cuda.stats() sees every one. Host code only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>

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

// The current device's default memory pool, which serves moekit's stream-ordered scratch
// (mallocAsync). Its release threshold is raised to the maximum on first use: freed blocks stay
// reserved and serve later requests, so a steady-state step allocates nothing from the device.
// (CUDA's own stream-ordered pool rather than a caching allocator of moekit's: the driver tracks
// which stream may reuse a freed block, across streams included.)
inline cudaMemPool_t devicePool() {
  static std::mutex mutex;
  static bool raised[DeviceCounters::kMaxDevices] = {};
  int device = 0;
  cudaMemPool_t pool = nullptr;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess) return nullptr;
  std::lock_guard<std::mutex> lock(mutex);
  if (device >= 0 && device < DeviceCounters::kMaxDevices && !raised[device]) {
    uint64_t threshold = UINT64_MAX;
    if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) == cudaSuccess) raised[device] = true;
  }
  return pool;
}

inline uint64_t poolReservedBytes(cudaMemPool_t pool) {
  uint64_t reserved = 0;
  if (pool) cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved);
  return reserved;
}

// From the current device's pool, ordered on `stream`; counted as an allocation when the pool grew.
inline cudaError_t mallocAsync(void** pointer, size_t bytes, cudaStream_t stream) {
  const cudaMemPool_t pool = devicePool();
  const uint64_t before = poolReservedBytes(pool);
  const cudaError_t err = cudaMallocAsync(pointer, bytes, stream);
  if (err == cudaSuccess) {
    const uint64_t after = poolReservedBytes(pool);
    DeviceCounters::instance().pooled(*pointer, bytes, after, after > before);
  }
  return err;
}

// Back to its pool, ordered on `stream` (the block stays reserved for the next mallocAsync).
inline cudaError_t freeAsync(void* pointer, cudaStream_t stream) {
  DeviceCounters::instance().returned(pointer);
  return cudaFreeAsync(pointer, stream);
}

}  // namespace moekit::cuda
