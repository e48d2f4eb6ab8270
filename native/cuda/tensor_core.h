// Tensor-core and asynchronous-copy wrappers: the only way kernels reach mma.sync, ldmatrix and
// cp.async. Under nvcc each is one inline PTX instruction; under the SIMT emulator (MOEKIT_EMU)
// each moves the same data between the same lanes with the emulator's exact __shfl_sync, so a
// kernel that calls one from divergent lanes, from a partial warp or after a lane exited is
// reported like any other warp collective (the call site named is the kernel's, not this file's).
//
// Fragments (PTX ISA, "Matrix fragments for mma.m16n8k16" / "mma.m16n8k32"), per lane, with
// g = lane / 4 and t = lane % 4; a 32-bit register holds 2 bf16 or 4 e4m3 elements, element 0 in
// the lowest bits:
//   mmaBf16m16n8k16   D[16,8] = A[16,16]·B[16,8] + C, bf16 inputs, f32 accumulators
//     a[0] A(g,   2t..2t+1)   a[1] A(g+8, 2t..2t+1)   a[2] A(g, 2t+8..2t+9)   a[3] A(g+8, 2t+8..2t+9)
//     b[0] B(2t..2t+1, g)     b[1] B(2t+8..2t+9, g)
//     c[0], c[1] C(g, 2t), C(g, 2t+1)                 c[2], c[3] C(g+8, 2t), C(g+8, 2t+1)
//   mmaE4m3m16n8k32   D[16,8] = A[16,32]·B[32,8] + C, e4m3 inputs (sm_89 and newer)
//     a[0] A(g, 4t..4t+3)  a[1] A(g+8, 4t..4t+3)  a[2] A(g, 4t+16..4t+19)  a[3] A(g+8, 4t+16..4t+19)
//     b[0] B(4t..4t+3, g)  b[1] B(4t+16..4t+19, g)   c as above
//   ldmatrixX4        four 8×8 matrices of 16-bit elements from shared memory: lanes 8i..8i+7
//                     pass the addresses of rows 0..7 of matrix i (16 contiguous bytes each, 16-byte
//                     aligned); lane L receives in r[i] the pair M_i(L/4, 2(L%4)..2(L%4)+1)
//   ldmatrixX4Trans   the same rows, transposed: r[i] = M_i(2(L%4), L/4), M_i(2(L%4)+1, L/4)
// So ldmatrixX4 on a row-major A tile gives mma's A fragment, and on a row-major [n][k] tile (the
// NT operand, B stored by column) gives B's; ldmatrixX4Trans gives B's from a row-major [k][n] tile.
//
// cp.async (global → shared, 16 bytes, bypassing L1): cpAsync16 issues a copy, cpAsync16OrZero
// writes 16 zero bytes instead of reading when its source is out of bounds, cpAsyncCommit closes
// the calling thread's copies issued since the last commit into a group, and cpAsyncWait<N> blocks
// until at most the N most recent groups are pending. A wait covers the calling thread's copies
// only: other threads' copies become visible after they wait and a __syncthreads.
//
// The emulator's model (EMULATOR.md, "Tensor-core wrappers"): mma sums, per output element, the
// exact products in k order onto C in fp32 (hardware's order is unspecified: only data whose sums
// are exact in fp32 gives equal bits); ldmatrix reads every row before any lane continues; cp.async
// fills its destination with 0xFF bytes when issued and copies when waited for (native/emu/README.md).
//
// FP8 on sm_80: the sm_80 device code of mmaE4m3m16n8k32 traps (the instruction does not exist
// there); host code checks first with requireFp8Mma, which throws moekit::Error(Device). The
// emulated mma faults likewise when MOEKIT_EMU_SM is below 89.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda_check.h"

#if defined(MOEKIT_EMU)
#include <cstring>
#include <stdexcept>

#include "../core/minifloat.h"
#endif

namespace moekit::cuda {

constexpr int kFp8MmaComputeCapability = 89;

// Throws Error(Device) unless CUDA device `device` runs mmaE4m3m16n8k32 (compute capability ≥ 8.9).
// `what` names the caller in the message.
inline void requireFp8Mma(int device, const char* what) {
  int major = 0, minor = 0;
  checkCuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
            std::string(what) + ": cudaDeviceGetAttribute");
  checkCuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
            std::string(what) + ": cudaDeviceGetAttribute");
  if (major * 10 + minor < kFp8MmaComputeCapability) {
    throw Error(ErrorKind::Device, std::string(what) + ": device " + std::to_string(device) +
                                       ": expected compute capability 8.9 or newer for the fp8 "
                                       "tensor-core mma, got " +
                                       std::to_string(major) + "." + std::to_string(minor));
  }
}

#if defined(__CUDACC__)

__device__ __forceinline__ unsigned sharedAddress(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mmaBf16m16n8k16(float (&c)[4], const uint32_t (&a)[4],
                                                const uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mmaE4m3m16n8k32(float (&c)[4], const uint32_t (&a)[4],
                                                const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
  (void)c, (void)a, (void)b;
  __trap();  // no fp8 mma before sm_89: requireFp8Mma stops the launch on the host
#endif
}

__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], const void* rowAddress) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sharedAddress(rowAddress)));
}

__device__ __forceinline__ void ldmatrixX4Trans(uint32_t (&r)[4], const void* rowAddress) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sharedAddress(rowAddress)));
}

__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sharedAddress(smem)), "l"(gmem)
               : "memory");
}

// src-size 0 reads nothing and zero-fills the 16 bytes; gmem must still be a valid pointer.
__device__ __forceinline__ void cpAsync16OrZero(void* smem, const void* gmem, bool inBounds) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sharedAddress(smem)),
               "l"(gmem), "r"(inBounds ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#elif defined(MOEKIT_EMU)

namespace tensorcore {

constexpr unsigned kWarp = 0xffffffffu;

inline int laneId() {
  return int((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x) & 31;
}

inline uint64_t pack(uint32_t lo, uint32_t hi) { return uint64_t(lo) | uint64_t(hi) << 32; }

// Element `element` of two packed registers (register 0 in the low 32 bits).
inline float bf16At(uint64_t word, int element) { return decodeBF16(uint16_t(word >> (16 * element))); }
inline float e4m3At(uint64_t word, int element) { return decodeE4M3(uint8_t(word >> (8 * element))); }

// This lane's outputs need A rows g and g+8 and B columns 2t and 2t+1 whole. Lane 4g+s holds
// k = kPerReg·s.. of rows g (a[0]) and g+8 (a[1]) and the same k + kK/2 (a[2], a[3]); lane 4n+s
// holds column n likewise (b[0], b[1]). So 8 shuffles of 64 bits gather A and 8 gather B.
// kPerReg elements per register: 2 (bf16) or 4 (e4m3).
template <int kPerReg, float (*decode)(uint64_t, int)>
void mmaEmulated(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const emu::Site& site) {
  constexpr int kK = 8 * kPerReg;        // 16 (bf16) or 32 (e4m3)
  constexpr int kHalf = kK / 2;          // k offset of a[2], a[3], b[1]
  const int lane = laneId(), g = lane / 4, t = lane % 4;
  float rowA[2][kK], colB[2][kK];
  const uint64_t aLow = pack(a[0], a[1]), aHigh = pack(a[2], a[3]), bBoth = pack(b[0], b[1]);
  for (int s = 0; s < 4; ++s) {
    const uint64_t low = __shfl_sync(kWarp, aLow, 4 * g + s, 32, site);
    const uint64_t high = __shfl_sync(kWarp, aHigh, 4 * g + s, 32, site);
    for (int e = 0; e < kPerReg; ++e) {
      rowA[0][kPerReg * s + e] = decode(low, e);
      rowA[1][kPerReg * s + e] = decode(low, kPerReg + e);
      rowA[0][kHalf + kPerReg * s + e] = decode(high, e);
      rowA[1][kHalf + kPerReg * s + e] = decode(high, kPerReg + e);
    }
  }
  for (int j = 0; j < 2; ++j) {
    for (int s = 0; s < 4; ++s) {
      const uint64_t col = __shfl_sync(kWarp, bBoth, 4 * (2 * t + j) + s, 32, site);
      for (int e = 0; e < kPerReg; ++e) {
        colB[j][kPerReg * s + e] = decode(col, e);
        colB[j][kHalf + kPerReg * s + e] = decode(col, kPerReg + e);
      }
    }
  }
  for (int i = 0; i < 4; ++i) {
    float sum = c[i];
    for (int k = 0; k < kK; ++k) sum += rowA[i / 2][k] * colB[i % 2][k];
    c[i] = sum;
  }
}

// Lane L takes from the owning lanes the address of the row its pair lives in (row L/4 of matrix
// i; .trans: rows 2(L%4) and 2(L%4)+1) and reads it. The closing __syncwarp keeps every lane from
// going on (and maybe overwriting those rows) before all have read, as the one instruction does.
inline void ldmatrixEmulated(uint32_t (&r)[4], const void* rowAddress, bool trans, const emu::Site& site) {
  const int lane = laneId();
  for (int i = 0; i < 4; ++i) {
    if (!trans) {
      const auto* row = static_cast<const unsigned char*>(__shfl_sync(kWarp, rowAddress, 8 * i + lane / 4, 32, site));
      std::memcpy(&r[i], row + 4 * (lane % 4), 4);
    } else {
      const auto* row0 = static_cast<const unsigned char*>(__shfl_sync(kWarp, rowAddress, 8 * i + 2 * (lane % 4), 32, site));
      const auto* row1 = static_cast<const unsigned char*>(__shfl_sync(kWarp, rowAddress, 8 * i + 2 * (lane % 4) + 1, 32, site));
      uint16_t low, high;
      std::memcpy(&low, row0 + 2 * (lane / 4), 2);
      std::memcpy(&high, row1 + 2 * (lane / 4), 2);
      r[i] = uint32_t(low) | uint32_t(high) << 16;
    }
  }
  __syncwarp(kWarp, site);
}

}  // namespace tensorcore

inline void mmaBf16m16n8k16(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], emu::Site site = {}) {
  tensorcore::mmaEmulated<2, tensorcore::bf16At>(c, a, b, site);
}

inline void mmaE4m3m16n8k32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], emu::Site site = {}) {
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  const int sm = major * 10 + minor;
  if (sm < kFp8MmaComputeCapability) {
    throw std::runtime_error("mmaE4m3m16n8k32 at " + std::string(site.file) + ":" + std::to_string(site.line) +
                             " on an emulated sm_" + std::to_string(sm) +
                             ": the fp8 mma needs sm_89 or newer (a trap on hardware)");
  }
  tensorcore::mmaEmulated<4, tensorcore::e4m3At>(c, a, b, site);
}

inline void ldmatrixX4(uint32_t (&r)[4], const void* rowAddress, emu::Site site = {}) {
  tensorcore::ldmatrixEmulated(r, rowAddress, false, site);
}

inline void ldmatrixX4Trans(uint32_t (&r)[4], const void* rowAddress, emu::Site site = {}) {
  tensorcore::ldmatrixEmulated(r, rowAddress, true, site);
}

inline void cpAsync16(void* smem, const void* gmem, emu::Site site = {}) {
  emu::asyncCopyIssue(smem, gmem, 16, 16, site);
}

inline void cpAsync16OrZero(void* smem, const void* gmem, bool inBounds, emu::Site site = {}) {
  emu::asyncCopyIssue(smem, gmem, 16, inBounds ? 16 : 0, site);
}

inline void cpAsyncCommit(emu::Site site = {}) { emu::asyncCopyCommit(site); }

template <int N>
inline void cpAsyncWait(emu::Site site = {}) {
  static_assert(N >= 0, "cp.async.wait_group takes a non-negative group count");
  emu::asyncCopyWait(N, site);
}

#else
#error "cuda/tensor_core.h: compile with nvcc, or with g++ and -include emu/emu.h (the SIMT emulator)"
#endif

}  // namespace moekit::cuda
