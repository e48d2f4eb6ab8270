// The micro-kernel contract between sgemm.cc (packing, blocking, threading) and the per-ISA
// kernels (sgemm_avx2.cc). Internal to the CPU backend.
//
// Packed operands, for one K block of kc steps:
//   a  kc × MR: a[p·MR + r] = A(i0 + r, p0 + p)   (rows past M are zero)
//   b  kc × NR: b[p·NR + j] = B(p0 + p, j0 + j)   (columns past N are zero)
// The kernel computes the full MR × NR tile
//   c[r·ldc + j] = (accumulate ? c[r·ldc + j] : 0) + acc[r][j],  acc[r][j] = Σ_p a[p·MR+r]·b[p·NR+j]
// accumulating acc from zero in p order, then adding it to c in one rounding.
//
// The transposing pack (A of NT/NN, B of NT) has a per-ISA version too: a full sliver from W
// rows that are contiguous along k, out[p·W + l] = src[l·rowStride + p] for p < kc, l < W.
// It only moves data, so every version packs the same bits.
#pragma once

#include <cstdint>

namespace moekit::cpu {

constexpr int kGemmMR = 6;
constexpr int kGemmNR = 16;

using GemmMicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 bool accumulate);
using GemmPackKContiguous = void (*)(const float* src, int64_t rowStride, int64_t kc, float* out);

#if defined(__x86_64__) || defined(__i386__)
// sgemm_avx2.cc, compiled with -mavx2 -mfma; call only when the CPU has both.
void gemmMicroKernelAvx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                         bool accumulate);
void gemmPackKContiguousAvx2MR(const float* src, int64_t rowStride, int64_t kc, float* out);
void gemmPackKContiguousAvx2NR(const float* src, int64_t rowStride, int64_t kc, float* out);
#endif

}  // namespace moekit::cpu
