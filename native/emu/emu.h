// Entry point of the moekit SIMT emulator: g++ force-includes this header (-include emu/emu.h)
// before any other, so the CUDA sources of native/cuda compile as ordinary C++ and run on the CPU.
//
// How it interplays with the CUDA headers (checked against CUDA 13.0 with g++ 12):
// - crt/host_defines.h defines __host__, __device__, __global__, __shared__, __constant__ and
//   __managed__ only when they are not yet defined (or under __CUDACC__, which g++ never defines),
//   so the definitions below win: execution-space qualifiers vanish and __shared__ becomes
//   thread_local (a block's fibers share one OS thread, so that is per-block storage).
// - cuda_runtime.h compiles under g++ without __CUDACC__: it gives dim3/uint3/float4 and the
//   make_* helpers, and declares the runtime API (extern "C"), which cudart.cc implements. It does
//   not include device_launch_parameters.h there (that would declare threadIdx & co. as extern
//   const); we also claim that header's include guard so no later include can.
// - Its C++ template overloads taking a kernel pointer (cudaFuncSetAttribute, ...) and the symbol
//   copies exist only under __CUDACC__; the ones kernel host code needs are provided below.
// - cuda_fp16.h, cuda_bf16.h and cuda_fp8.h compile under g++ and give the host conversions; a
//   kernel file includes them as usual.
// - __launch_bounds__ is only defined under __CUDACC__; here it expands to nothing.
// __CUDA_ARCH__ stays undefined (this is a host compilation); MOEKIT_EMU is defined instead.
#pragma once

#if defined(__CUDACC__)
#error "native/emu/emu.h is for g++ builds of CUDA sources; nvcc builds use the real CUDA runtime"
#endif

#define MOEKIT_EMU 1

#define __host__
#define __device__
#define __global__
#define __constant__
#define __managed__
#define __shared__ thread_local
#define __launch_bounds__(...)
#define __DEVICE_LAUNCH_PARAMETERS_H__

#include <cuda_runtime.h>

#include "builtins.h"

// ---- C++ overloads of the runtime API that cuda_runtime.h keeps for nvcc -------------------------
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* func, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}
template <class T>
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* func) {
  return ::cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(func));
}
template <class T>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, T* func, int blockSize,
                                                                 size_t dynamicSMemSize) {
  return ::cudaOccupancyMaxActiveBlocksPerMultiprocessor(numBlocks, reinterpret_cast<const void*>(func),
                                                         blockSize, dynamicSMemSize);
}
template <class T>
inline cudaError_t cudaMemcpyToSymbol(const T& symbol, const void* src, size_t count, size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
  return ::cudaMemcpyToSymbol(reinterpret_cast<const void*>(&symbol), src, count, offset, kind);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void* dst, const T& symbol, size_t count, size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
  return ::cudaMemcpyFromSymbol(dst, reinterpret_cast<const void*>(&symbol), count, offset, kind);
}
