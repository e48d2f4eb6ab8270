// The AVX2+FMA sgemm micro-kernel and transposing packs (contracts in sgemm_kernel.h); compiled
// with -mavx2 -mfma.
//
// Math: one 6 × 16 tile of C = Σ_p a_p ⊗ b_p over a K block. Register blocking: 12 ymm
// accumulators (6 rows × two 8-float halves), per k step two aligned loads of b, six broadcasts
// of a and 12 FMAs, so each loaded value feeds 6 or 2 FMAs. The C tile's rows (two cache lines
// each when unaligned) are prefetched before the K loop: a task's C tile is not in L1 when its
// next K block comes round, and the add at the end would otherwise wait for it (measured: +10–18%
// single-thread GFLOP/s on the mixtral-like expert shapes, 1.24× on 2 threads). Each accumulator lane is one C
// element, updated with one FMA per k in k order: the order the determinism guarantee relies on.
// Packs: W rows contiguous along k are read 8 k steps at a time and turned into 8 k-major
// vectors by an in-register 8 × 8 transpose (unpack, shuffle, permute2f128).
// Threading: none here; sgemm.cc hands each tile and each pack to exactly one thread.
#include "sgemm_kernel.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include <algorithm>

namespace moekit::cpu {

static_assert(kGemmMR == 6 && kGemmNR == 16, "the AVX2 kernel is written for 6 x 16 tiles");

void gemmMicroKernelAvx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                         bool accumulate) {
  __m256 acc[6][2];
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 15), _MM_HINT_T0);
    acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < 6; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
    }
    a += 6;
    b += 16;
  }
#pragma GCC unroll 6
  for (int r = 0; r < 6; ++r) {
    float* cr = c + r * ldc;
    if (accumulate) {
      acc[r][0] = _mm256_add_ps(_mm256_loadu_ps(cr), acc[r][0]);
      acc[r][1] = _mm256_add_ps(_mm256_loadu_ps(cr + 8), acc[r][1]);
    }
    _mm256_storeu_ps(cr, acc[r][0]);
    _mm256_storeu_ps(cr + 8, acc[r][1]);
  }
}

namespace {

// rows[l] = (x_l0 … x_l7) → rows[p] = (x_0p … x_7p).
inline void transpose8x8(__m256 rows[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(rows[0], rows[1]), t1 = _mm256_unpackhi_ps(rows[0], rows[1]);
  const __m256 t2 = _mm256_unpacklo_ps(rows[2], rows[3]), t3 = _mm256_unpackhi_ps(rows[2], rows[3]);
  const __m256 t4 = _mm256_unpacklo_ps(rows[4], rows[5]), t5 = _mm256_unpackhi_ps(rows[4], rows[5]);
  const __m256 t6 = _mm256_unpacklo_ps(rows[6], rows[7]), t7 = _mm256_unpackhi_ps(rows[6], rows[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  rows[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  rows[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  rows[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  rows[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  rows[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  rows[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  rows[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  rows[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// out[p·W + l] = src[l·rowStride + p] for l in [l0, l0 + lanes), lanes <= 8 (rows past `lanes`
// are loaded from the last row and not stored).
template <int W>
void packLanes(const float* src, int64_t rowStride, int64_t kc, int l0, int lanes, float* out) {
  const float* row[8];
  for (int l = 0; l < 8; ++l) row[l] = src + int64_t(l0 + std::min(l, lanes - 1)) * rowStride;
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8) {
    __m256 v[8];
    for (int l = 0; l < 8; ++l) v[l] = _mm256_loadu_ps(row[l] + p);
    transpose8x8(v);
    for (int q = 0; q < 8; ++q) {
      float* o = out + (p + q) * W + l0;
      if (lanes == 8) {
        _mm256_storeu_ps(o, v[q]);
      } else {  // 6 lanes: the A sliver
        _mm_storeu_ps(o, _mm256_castps256_ps128(v[q]));
        _mm_storel_pi(reinterpret_cast<__m64*>(o + 4), _mm256_extractf128_ps(v[q], 1));
      }
    }
  }
  for (; p < kc; ++p)
    for (int l = 0; l < lanes; ++l) out[p * W + l0 + l] = row[l][p];
}

}  // namespace

void gemmPackKContiguousAvx2MR(const float* src, int64_t rowStride, int64_t kc, float* out) {
  packLanes<kGemmMR>(src, rowStride, kc, 0, kGemmMR, out);
}

void gemmPackKContiguousAvx2NR(const float* src, int64_t rowStride, int64_t kc, float* out) {
  packLanes<kGemmNR>(src, rowStride, kc, 0, 8, out);
  packLanes<kGemmNR>(src, rowStride, kc, 8, 8, out);
}

}  // namespace moekit::cpu

#endif
