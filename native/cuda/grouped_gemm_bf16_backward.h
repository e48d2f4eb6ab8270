// The backward GEMMs of the bf16 tensor-core grouped GEMM (kernels and thread mapping:
// grouped_gemm_bf16_backward.cuh; the forward NT is grouped_gemm_bf16.h). bf16 operands are passed
// as their uint16_t bits (core/minifloat.h), accumulation is fp32, outputs are f32.
//
// Layout: the padded m-grouped layout of grouped_gemm_bf16.h. Group g (an expert) owns rows_g ≥ 0
// rows starting at the padded row start_g (bf16GemmRowStarts: every group begins on a 64-row tile);
// rows [start_g + rows_g, start_{g+1}) are padding, never read (the kernels zero-fill them on chip,
// so they may hold anything, NaN included) and never written. The groups are the forward's
// Bf16GemmGroup descriptors: rows_g, n_g (the forward's output columns), k_g (its inner dimension)
// and w_g [n_g, k_g] row-major; w3 is not read.
//   dOut  [Mpad, ldDOut] row-major bf16, the gradient of the forward's output; group g uses its
//         first n_g columns
//   a     [Mpad, lda] row-major bf16, the forward's input; group g uses its first k_g columns
//   dA    [Mpad, ldDA] row-major f32; group g writes its first k_g columns of its real rows
//   dW_g  [n_g, k_g] row-major f32, one pointer per group (the weight gradient's own buffer)
//
// Math, per group g:
//   groupedGemmBf16NN   dA_g (+)= dOut_g · w_g          [rows_g, k_g], reduction over n_g
//   groupedGemmBf16TN   dW_g (+)= dOut_gᵀ · a_g         [n_g, k_g], reduction over the rows_g
//                                                       real rows of the group
// "+=" when accumulate, "=" otherwise: the product is summed in fp32 accumulators first and added
// to the old value once. A group without rows adds nothing; without accumulate its dW_g is set to 0
// (the product over no rows) and dA has no row of it to write.
//
// Numerics: as the forward (grouped_gemm_bf16.h): products of bf16 are exact in fp32, summed in fp32
// in the tensor cores' order, so a result equals the float64 reference within
// ≈ (reduction length)·2⁻²⁴·Σ|terms| (+1 rounding of the accumulate) and exactly when every partial
// sum is exact in fp32 (small integers). The TN reduction runs over rows in one block per output
// tile, in ascending row order, without atomics: dW is the same bits on every run.
//
// Requirements (checked before any launch, moekit::Error(Shape | Argument) naming the argument):
// ldDOut and lda positive multiples of 8; every group's rows_g ≥ 0, n_g a positive multiple of 8
// and ≤ ldDOut, k_g a positive multiple of 8 and ≤ ldDA (NN) or lda (TN) — n_g and k_g are read in
// 16-byte chunks of 8 bf16; dOut, a and w_g not null and 16-byte aligned where they will be read (cp.async),
// dA and dW_g not null where they will be written; dW has one pointer per group. Every pointer is
// DEVICE memory; work is enqueued on `stream` (the group and tile tables are uploaded on it into
// stream-ordered scratch, StreamBuffer); a failed launch throws moekit::Error(Device).
#pragma once

#include <cuda_runtime.h>

#include <vector>

#include "grouped_gemm_bf16.h"

namespace moekit::cuda {

// dA [Mpad, ldDA] (+)= dOut_g · w_g on each group's real rows (the input gradient).
void groupedGemmBf16NN(const uint16_t* dOut, int ldDOut, const std::vector<Bf16GemmGroup>& groups, float* dA,
                       int ldDA, bool accumulate, cudaStream_t stream);

// dW[g] [n_g, k_g] (+)= dOut_gᵀ · a_g over each group's real rows (the weight gradient).
// dW: one DEVICE pointer per group.
void groupedGemmBf16TN(const uint16_t* dOut, int ldDOut, const uint16_t* a, int lda,
                       const std::vector<Bf16GemmGroup>& groups, const std::vector<float*>& dW, bool accumulate,
                       cudaStream_t stream);

}  // namespace moekit::cuda
