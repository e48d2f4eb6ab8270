// FP8 on the CPU (DESIGN F1–F3): block quantisation of activations and weights, and the reference
// block-scaled grouped GEMM that a CUDA FP8 GEMM is checked against. The per-block math (scale,
// element code, partial blocks) is core/fp8_blocks.h's.
//
// Layouts (DeepSeek-V3 / DeepGEMM block scaling, m-grouped contiguous NT like grouped_gemm.h):
//   activations a [M,K]    codes [M,K], scales [M, ceil(K/128)]        1 × 128 blocks along K
//   weights     w [G,N,K]  codes [G,N,K], scales [G, ceil(N/128), ceil(K/128)]
//                                                                     128 × 128 blocks per expert
//   out [M,N], group g owns rows [o_g, o_g + groupRows[g]) of a and out (a group may be empty):
//     out[r,n] = Σ_kb sa[r,kb] · sb[g,n/128,kb] · Σ_{k in block kb} decode(a[r,k]) · decode(w_g[n,k])
//   i.e. Σ over K blocks of (a·sa)(w_g·sb)ᵀ (F3). A last block shorter than 128 (K or N not a
//   multiple of 128) is summed over the elements it has, as quantisation defined it.
//
// Accumulation is float64: each block's Σ_k of code products is exact in float64 when both
// operands are e4m3 (a product is a multiple of 2⁻¹⁸ below 2^17.6, so 128 of them need fewer than
// 53 bits), then times sa·sb (exact in float64) and summed over blocks in ascending kb in float64,
// rounded to f32 once. With an e5m2 operand the block sums are within float64 rounding. Work is
// split on the thread pool by (group, 32-row tile), each output written by one task in a fixed
// order: bit-identical for any thread count.
//
// Every entry point validates its sizes and pointers and throws moekit::Error naming the argument.
#pragma once

#include <cstdint>

#include "../core/fp8_blocks.h"

namespace moekit::cpu {

// x [matrices, rows, cols] f32 → codes (same shape) and scales
// [matrices, ceil(rows/blockRows), ceil(cols/128)]; blockRows is 1 or 128.
void quantizeFp8Blocks(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                       Fp8Format format, uint8_t* codes, float* scales);

// a [M,K] in 1 × 128 blocks: codes [M,K], scales [M, ceil(K/128)].
void quantizeActivations(const float* a, int64_t m, int64_t k, Fp8Format format, uint8_t* codes,
                         float* scales);

// w [G,N,K] in 128 × 128 blocks of each expert: codes [G,N,K], scales [G, ceil(N/128), ceil(K/128)].
void quantizeWeights(const float* w, int64_t groups, int64_t n, int64_t k, Fp8Format format,
                     uint8_t* codes, float* scales);

// The F3 reference above; out [M,N] is overwritten. K ≥ 1, N ≥ 1, groups ≥ 1, groupRows ≥ 0
// summing to M.
void groupedGemmFp8Reference(const uint8_t* a, Fp8Format aFormat, const float* aScales,
                             const uint8_t* w, Fp8Format wFormat, const float* wScales,
                             const int32_t* groupRows, int groups, int64_t m, int n, int k,
                             float* out);

}  // namespace moekit::cpu
