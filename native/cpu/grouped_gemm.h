// Grouped GEMM over expert-contiguous rows (DeepGEMM's "m-grouped, contiguous, NT" layout): the
// expert FFN matmuls and ops.groupedGemm.
//
//   a   [M,K] row-major; group g owns rows [o_g, o_g + groupRows[g]), o_g = Σ_{h<g} groupRows[h],
//       Σ_g groupRows[g] = M (a group may have 0 rows)
//   w   [G,N,K] row-major; w_g [N,K] is in PyTorch nn.Linear orientation (out = N, in = K)
//   out [M,N]: out_g = a_g · w_gᵀ
// Backward: dA [M,K] = dOut_g · w_g, dW_g [N,K] += dOut_gᵀ · a_g.
//
// groupedGemmNT / groupedGemmNTBackward are the fast path: one sgemm problem per non-empty group
// (NT forward; NN for dA and TN for dW backward), all run as one batch on the thread pool
// (sgemm.h: blocked, packed, AVX2+FMA when the CPU has it, bit-identical for any thread count).
// The *Reference versions are plain loops that read both operands along K (forward) or stream
// whole rows (backward), accumulating in fp32: the slow oracle the fast path is checked against.
// The two agree to fp32 rounding, not bitwise (K blocking and FMA change the rounding).
// Every entry point validates its shapes and throws moekit::Error naming the argument.
#pragma once

#include <cstdint>

namespace moekit::cpu {

// out [M,N] is overwritten. aRowMap (optional, the permute fused into the packing): row r of the
// grouped A is row aRowMap[r] of `a` (a then holds the un-permuted rows; indices unchecked).
void groupedGemmNT(const float* a, const float* w, const int32_t* groupRows, int groups, int64_t m,
                   int n, int k, float* out, const int32_t* aRowMap = nullptr);
void groupedGemmNTReference(const float* a, const float* w, const int32_t* groupRows, int groups,
                            int64_t m, int n, int k, float* out);

// dA [M,K] is overwritten, dW [G,N,K] is added to; either may be null (not wanted). aRowMap as
// for groupedGemmNT (it only affects dW, which reads A).
void groupedGemmNTBackward(const float* dOut, const float* a, const float* w,
                           const int32_t* groupRows, int groups, int64_t m, int n, int k,
                           float* dA, float* dW, const int32_t* aRowMap = nullptr);
void groupedGemmNTBackwardReference(const float* dOut, const float* a, const float* w,
                                    const int32_t* groupRows, int groups, int64_t m, int n, int k,
                                    float* dA, float* dW);

}  // namespace moekit::cpu
