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
//
// The expert FFN's fused forms (experts.h), through sgemm.h's row maps and scatter:
//   groupedGemmNTCombine          down projection with the weighted combine in the epilogue:
//                                 y[rowToken[r]] += rowWeight[r]·out[r], no [M,N] out
//   groupedGemmNTCombineBackward  its backward: the NN product through the row map, unweighted,
//                                 and dW of the weighted rows
// Each element of y (and of the un-permuted dA of groupedGemmNTBackward) receives its rows in
// ascending r, whatever the thread count.
#pragma once

#include <cstdint>

namespace moekit::cpu {

// out [M,N] is overwritten. aRowMap (optional, the permute fused into the packing): row r of the
// grouped A is row aRowMap[r] of `a` (a then holds the un-permuted rows; indices unchecked).
void groupedGemmNT(const float* a, const float* w, const int32_t* groupRows, int groups, int64_t m,
                   int n, int k, float* out, const int32_t* aRowMap = nullptr);
void groupedGemmNTReference(const float* a, const float* w, const int32_t* groupRows, int groups,
                            int64_t m, int n, int k, float* out);

// dW [G,N,K] is added to; either of dA and dW may be null (not wanted). Without aRowMap, dA [M,K]
// is overwritten. With aRowMap (as for groupedGemmNT), a and dA hold the un-permuted rows and dA
// is added to: dA[aRowMap[r]] += (dOut_g · w_g)[r] (the permute's backward fused into the GEMM).
void groupedGemmNTBackward(const float* dOut, const float* a, const float* w,
                           const int32_t* groupRows, int groups, int64_t m, int n, int k,
                           float* dA, float* dW, const int32_t* aRowMap = nullptr);

// y [T,N] is added to: y[rowToken[r]] += rowWeight[r] · (a_g · w_gᵀ)[r]; rowWeight null = 1.
// rowToken [M] in [0,T).
void groupedGemmNTCombine(const float* a, const float* w, const int32_t* groupRows, int groups,
                          int64_t m, int n, int k, const int32_t* rowToken, const float* rowWeight,
                          int T, float* y);

// For dy [T,N] of groupedGemmNTCombine's y:
//   g [M,K] = dy[rowToken[r]] · w_g, overwritten: unweighted, the caller finishes
//             da[r] = rowWeight[r]·g[r] and dRowWeight[r] = g[r]·a[r] in its own pass
//   dW_g [N,K] += Σ_r rowWeight[r] · dy[rowToken[r]]ᵀ ⊗ a[r]
// Either of g and dW may be null (not wanted).
void groupedGemmNTCombineBackward(const float* dy, const float* a, const float* w,
                                  const int32_t* groupRows, int groups, int64_t m, int n, int k,
                                  const int32_t* rowToken, const float* rowWeight, int T,
                                  float* g, float* dW);
void groupedGemmNTBackwardReference(const float* dOut, const float* a, const float* w,
                                    const int32_t* groupRows, int groups, int64_t m, int n, int k,
                                    float* dA, float* dW);

}  // namespace moekit::cpu
