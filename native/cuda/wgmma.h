// Warpgroup tensor-core wrappers (sm_90a): the only way kernels reach wgmma and the proxy fence.
// Under nvcc each is one inline PTX instruction, emitted only when compiling for sm_90a (elsewhere
// the body traps: the host picks the kernel that calls them only on a compute capability 9.0
// device, fp8GemmKernel in grouped_gemm_fp8.h). Under the SIMT emulator (MOEKIT_EMU) they are the
// emulator's asynchronous-op model (native/emu/runtime.h, "wgmma") with the layouts below.
//
// A warpgroup is 4 consecutive warps (threads 128w..128w+127 of the block). Every thread of it
// executes the same wgmma with the same descriptors.
//
// Shared-memory operands (PTX ISA, "Matrix Descriptor Format", "Shared Memory Matrix Layout"), as
// used here: no swizzle, both operands K-major (A [M][K], B as [N][K]; the only order e4m3 has).
// The unit is the core matrix, 8 rows of 16 bytes stored contiguously (128 bytes, row r at byte
// 16r). Byte kb of row r of an operand lies at
//   start + ⌊r/8⌋·SBO + ⌊kb/16⌋·LBO + (r mod 8)·16 + kb mod 16
// with LBO (leading dimension byte offset) the step between core matrices adjacent in K and SBO
// (stride dimension byte offset) the step between core matrices adjacent in M or N. The 64-bit
// descriptor packs (address >> 4) in bits 0–13, (LBO >> 4) in 16–29, (SBO >> 4) in 32–45, base
// offset 0 in 49–51 and swizzle mode 0 in 62–63 (wgmmaDescriptorBits). The emulator refuses other
// swizzle modes and base offsets (a KernelFault): they are not modelled.
//
// Accumulators of wgmma m64nNk32 (fp32, N/2 per thread), with w the warp within the warpgroup,
// g = lane / 4 and t = lane % 4:
//   d[i] = D(16w + g + 8·⌊(i mod 4)/2⌋, 8·⌊i/4⌋ + 2t + (i mod 2))
// i.e. mma.sync's m16n8 C fragment (tensor_core.h), warp w owning rows 16w..16w+15, repeated over
// the N/8 column blocks.
//
// Protocol (what the emulator checks): wgmmaFence before the first wgmma and after every
// wgmmaWait (the accumulators were accessible in between); shared memory written by the generic
// proxy (plain stores, cp.async) is made visible to wgmma by fenceProxyAsync in the writing thread
// after the data landed, then a __syncthreads; wgmma ops are issued, wgmmaCommit closes them into
// a group, wgmmaWait<N>(d) blocks until at most N groups are pending and only then may d be read.
// The emulator runs an op when its group completes, in k order onto the fp32 accumulator (the
// hardware's order is unspecified: equal bits only where the sums are exact in fp32).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "tensor_core.h"

#if defined(MOEKIT_EMU)
#include <stdexcept>
#include <string>

#include "../core/minifloat.h"
#endif

namespace moekit::cuda {

constexpr int kWgmmaThreads = 128;  // one warpgroup
constexpr int kCoreMatrixRows = 8;
constexpr int kCoreMatrixBytes = 128;

// The descriptor of a no-swizzle operand at shared address `address` (all three byte counts are
// multiples of 16 below 2^18).
__host__ __device__ constexpr uint64_t wgmmaDescriptorBits(uint32_t address, uint32_t leadingBytes,
                                                           uint32_t strideBytes) {
  return uint64_t((address & 0x3ffffu) >> 4) | uint64_t((leadingBytes & 0x3ffffu) >> 4) << 16 |
         uint64_t((strideBytes & 0x3ffffu) >> 4) << 32;
}

#if defined(__CUDACC__)

__device__ __forceinline__ uint64_t wgmmaDescriptor(const void* smem, uint32_t leadingBytes, uint32_t strideBytes) {
  return wgmmaDescriptorBits(sharedAddress(smem), leadingBytes, strideBytes);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOEKIT_WGMMA 1
#endif

__device__ __forceinline__ void wgmmaFence() {
#if defined(MOEKIT_WGMMA)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

__device__ __forceinline__ void fenceProxyAsync() {
#if defined(MOEKIT_WGMMA)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

__device__ __forceinline__ void wgmmaCommit() {
#if defined(MOEKIT_WGMMA)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

// The empty asm per register ties d to the wait: the compiler may not read d before it.
template <int N, int R>
__device__ __forceinline__ void wgmmaWait(float (&d)[R]) {
#if defined(MOEKIT_WGMMA)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
  MOEKIT_UNROLL
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
#elif defined(__CUDA_ARCH__)
  (void)d;
  __trap();
#endif
}

// d = (accumulate ? d : 0) + A[64,32] · B[64,32]ᵀ, e4m3 operands in shared memory, fp32 accumulators.
__device__ __forceinline__ void wgmmaE4m3m64n64k32(float (&d)[32], uint64_t descA, uint64_t descB, bool accumulate) {
#if defined(MOEKIT_WGMMA)
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(descA), "l"(descB), "r"(int(accumulate)));
#elif defined(__CUDA_ARCH__)
  (void)d, (void)descA, (void)descB, (void)accumulate;
  __trap();
#endif
}

#elif defined(MOEKIT_EMU)

inline uint64_t wgmmaDescriptor(const void* smem, uint32_t leadingBytes, uint32_t strideBytes, emu::Site site = {}) {
  return wgmmaDescriptorBits(emu::sharedOffset(smem, site), leadingBytes, strideBytes);
}

inline void wgmmaFence(emu::Site site = {}) { emu::wgmmaFence(site); }

inline void fenceProxyAsync(emu::Site site = {}) { emu::fenceProxyAsync(site); }

inline void wgmmaCommit(emu::Site site = {}) { emu::wgmmaCommit(site); }

template <int N, int R>
inline void wgmmaWait(float (&)[R], emu::Site site = {}) {
  static_assert(N >= 0, "wgmma.wait_group takes a non-negative group count");
  emu::wgmmaWait(N, site);
}

namespace wgmma_model {

// A decoded no-swizzle descriptor: operand byte (row, kb) at base + offset(row, kb).
struct Operand {
  const unsigned char* base;
  uint32_t leading, stride;
  const unsigned char* at(int row, int kb) const {
    return base + uint32_t(row / kCoreMatrixRows) * stride + uint32_t(kb / 16) * leading + uint32_t(row % kCoreMatrixRows) * 16 +
           uint32_t(kb % 16);
  }
};

// Decodes `desc` for an operand of `rows` × `kBytes`; throws (a KernelFault of the kernel) when its
// swizzle or base offset is not 0 or when its last byte is outside the dynamic shared memory.
inline Operand decode(uint64_t desc, int rows, int kBytes, const char* name, const emu::Site& site) {
  const uint64_t swizzle = desc >> 62, baseOffset = desc >> 49 & 7u;
  if (swizzle != 0 || baseOffset != 0) {
    throw std::runtime_error("wgmma at " + std::string(site.file) + ":" + std::to_string(site.line) + ": descriptor " +
                             name + " has swizzle mode " + std::to_string(swizzle) + " and base offset " +
                             std::to_string(baseOffset) + "; the emulator models swizzle 0, base offset 0 only");
  }
  auto* smem = static_cast<const unsigned char*>(emu::dynamicSharedBase());
  const Operand o{smem + ((desc & 0x3fffu) << 4), uint32_t(desc >> 16 & 0x3fffu) << 4,
                  uint32_t(desc >> 32 & 0x3fffu) << 4};
  emu::sharedOffset(o.at(rows - 1, kBytes - 1), site);
  return o;
}

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  return x ^ x >> 33;
}

}  // namespace wgmma_model

inline void wgmmaE4m3m64n64k32(float (&d)[32], uint64_t descA, uint64_t descB, bool accumulate, emu::Site site = {}) {
  constexpr int kM = 64, kN = 64, kK = 32;
  const wgmma_model::Operand a = wgmma_model::decode(descA, kM, kK, "a", site);
  const wgmma_model::Operand b = wgmma_model::decode(descB, kN, kK, "b", site);
  const int thread = int((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x) % kWgmmaThreads;
  const int warp = thread / 32, g = thread % 32 / 4, t = thread % 4;
  const uint64_t signature = wgmma_model::mix(descA) ^ wgmma_model::mix(descB ^ 0x5bd1e995u) ^ uint64_t(accumulate);
  emu::wgmmaIssue(emu::WgmmaOp{d, 32, signature, [=](float* acc) {
                                 for (int i = 0; i < 32; ++i) {
                                   const int row = 16 * warp + g + 8 * (i % 4 / 2), col = 8 * (i / 4) + 2 * t + i % 2;
                                   float sum = accumulate ? acc[i] : 0.0f;
                                   for (int k = 0; k < kK; ++k) sum += decodeE4M3(*a.at(row, k)) * decodeE4M3(*b.at(col, k));
                                   acc[i] = sum;
                                 }
                               }},
                  site);
}

#else
#error "cuda/wgmma.h: compile with nvcc, or with g++ and -include emu/emu.h (the SIMT emulator)"
#endif

}  // namespace moekit::cuda
