// Launch-geometry helpers every kernel file of native/cuda shares: the number of blocks for a
// one-thread-per-item grid, a thread's flat index and the grid's thread count (for grid-stride
// loops), and MOEKIT_UNROLL (#pragma unroll under nvcc, nothing under g++). Include after
// emu/launch.h.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MOEKIT_UNROLL _Pragma("unroll")
#else
#define MOEKIT_UNROLL
#endif

namespace moekit::cuda {

// ⌈count / threads⌉ blocks, at least 1, at most maxBlocks (a grid-stride loop covers the rest).
inline unsigned gridBlocks(int64_t count, int threads, int64_t maxBlocks = int64_t(1) << 31) {
  const int64_t blocks = (count + threads - 1) / threads;
  return unsigned(blocks < 1 ? 1 : (blocks > maxBlocks ? maxBlocks : blocks));
}

__device__ __forceinline__ int64_t globalThread() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t gridThreads() { return int64_t(gridDim.x) * blockDim.x; }

}  // namespace moekit::cuda
