// Grouped bf16 GEMM on tensor cores, m-grouped contiguous NT with tile-padded groups (kernels and
// thread mapping: grouped_gemm_bf16.cu). bf16 values are passed as their uint16_t bits
// (core/minifloat.h), accumulation is fp32, outputs are f32.
//
// Layout. Group g (an expert) owns rows_g ≥ 0 rows of the activations, starting at the padded row
//   start_0 = 0,   start_{g+1} = start_g + ⌈rows_g / 64⌉ · 64      (kBf16GemmRowAlign = 64)
// so every group begins on a 64-row tile; rows [start_g + rows_g, start_{g+1}) are padding and
// Mpad = start_G (bf16GemmRowStarts). A group with no rows takes no space. There is no sentinel
// value: padding rows are known from the group sizes alone. They are never read (a's padding rows
// may hold anything; the kernel zero-fills them on chip) and never written (out's padding rows keep
// their contents), and rowToken/rowWeight are not read there either.
//   a     [Mpad, lda] row-major; group g uses its first k_g columns
//   w_g   [n_g, k_g] row-major (PyTorch nn.Linear orientation), one pointer per group, so groups of
//         heterogeneous experts (different n_g and k_g) run in one launch
//   out   [Mpad, ldOut] row-major; group g writes its first n_g columns of its real rows
//
// Epilogues (one launch each):
//   groupedGemmBf16          out = a_g · w_gᵀ
//   groupedGemmBf16Swiglu    a1 = a_g · w1_gᵀ and a3 = a_g · w3_gᵀ from one pass over a, then
//                            h = silu(a1)·a3 (core/activation.h, DESIGN X1); a1 and a3 are stored
//                            too when not null (the backward needs them)
// Not done here: gelu/relu epilogues, bf16 outputs. The backward GEMMs (NN for dA, TN for dW) are in
// grouped_gemm_bf16_backward.h.
//
// Numerics: bf16·bf16 products are exact in fp32 and summed in fp32 in the tensor cores' order
// (unspecified), so a result equals the float64 reference within ≈ k_g·2⁻²⁴·Σ|a·w| and exactly
// when every partial sum is exact in fp32 (small integers).
//
// Requirements (checked, moekit::Error(Shape | Argument) naming the argument): k_g a positive
// multiple of 8 and ≤ lda, lda a multiple of 8, n_g ≥ 1 and ≤ ldOut (ldY), a and each w_g
// 16-byte aligned (16-byte cp.async chunks), pointers not null where they will be read or
// written. Every pointer is DEVICE memory; work is enqueued on `stream` (the group table is
// uploaded on it into stream-ordered scratch, StreamBuffer); a failed launch throws
// moekit::Error(Device).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace moekit::cuda {

constexpr int kBf16GemmRowAlign = 64;  // the row tile, and the padding unit of the layout

struct Bf16GemmGroup {
  int rows = 0;                  // rows_g ≥ 0: real rows of the group
  int n = 0;                     // n_g ≥ 1: output columns
  int k = 0;                     // k_g: inner dimension, a positive multiple of 8
  const uint16_t* w = nullptr;   // DEVICE [n_g, k_g] bf16 (w1 for the swiglu epilogue)
  const uint16_t* w3 = nullptr;  // DEVICE [n_g, k_g] bf16, the swiglu epilogue only
};

// start [G+1]: start[g] = first padded row of group g, start[G] = Mpad.
std::vector<int64_t> bf16GemmRowStarts(const std::vector<Bf16GemmGroup>& groups);

// out [Mpad, ldOut] = a_g · w_gᵀ on each group's real rows.
void groupedGemmBf16(const uint16_t* a, int lda, const std::vector<Bf16GemmGroup>& groups, float* out,
                     int ldOut, cudaStream_t stream);

// h [Mpad, ldOut] = swiglu(a_g · w1_gᵀ, a_g · w3_gᵀ); a1, a3 [Mpad, ldOut] or null.
void groupedGemmBf16Swiglu(const uint16_t* a, int lda, const std::vector<Bf16GemmGroup>& groups, float* h,
                           float* a1, float* a3, int ldOut, cudaStream_t stream);

}  // namespace moekit::cuda
