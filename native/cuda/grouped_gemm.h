// Grouped GEMMs of one expert group on the device, fp32 (the device twin of
// native/cpu/grouped_gemm.h; kernels and thread mappings in grouped_gemm.cu).
//
// Layout ("m-grouped, contiguous"): the group's permuted rows are contiguous, expert e (local
// index in the group) owning rows [start[e] − start[0], start[e+1] − start[0]) of every row-major
// [rows, ·] operand passed here (pointers already at the group's first row); an expert may own no
// row. Weights are [Eg, N, K] row-major, w_e [N,K] in nn.Linear orientation.
//
//   NT  out_e [rows_e,N]  = a_e [rows_e,K] · w_eᵀ        forward matmuls
//   NN  dA_e  [rows_e,K] (+)= dOut_e [rows_e,N] · w_e     backward, input gradient
//   TN  dW_e  [N,K]      += dOut_eᵀ · a_e                 backward, weight gradient
//
// Each output element is summed by one thread in ascending order of the inner index with fp32
// fmaf, so results are the same on every run. Every pointer is DEVICE memory; work is enqueued on
// `stream`; a failed launch throws moekit::Error(Device) naming the kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../layer/stage_types.h"

namespace moekit::cuda {

// The rows of a group's experts. start: DEVICE [experts+1], absolute permuted-row offsets (the
// plan's offsets from the group's first expert). tiles = rowTiles(counts) for the same counts:
// the grid size of the NT/NN kernels (the host knows the counts after the plan).
struct ExpertRows {
  const int32_t* start = nullptr;
  int experts = 0;
  int64_t tiles = 0;
};

// Σ_e ⌈counts[e] / 64⌉ — the row tiles of the NT/NN kernels. counts: HOST [experts].
int64_t rowTiles(const int32_t* counts, int experts);

// X1 first matmul with the activation in its epilogue: a1 = x·w1_eᵀ, for swiglu also a3 = x·w3_eᵀ
// (one pass over x for both), then h = act(a1[, a3]). x [rows,K]; w1, w3 [Eg,F,K];
// a1, a3, h [rows,F] (a3 and w3 swiglu only).
void expertUpProjection(Activation act, const float* x, const float* w1, const float* w3,
                        const ExpertRows& rows, int F, int K, float* a1, float* a3, float* h,
                        cudaStream_t stream);

// NT: out [rows,N] = a_e · w_eᵀ (overwritten). a [rows,K], w [Eg,N,K].
void groupedGemmNT(const float* a, const float* w, const ExpertRows& rows, int N, int K, float* out,
                   cudaStream_t stream);

// NN: dA [rows,K] = dOut_e · w_e, or += when accumulate. dOut [rows,N], w [Eg,N,K].
void groupedGemmNN(const float* dOut, const float* w, const ExpertRows& rows, int N, int K,
                   bool accumulate, float* dA, cudaStream_t stream);

// NN fused with X1's backward: dh = dOut_e · w2_e (never stored), then da1 (and da3 for swiglu) =
// the activation's backward at the saved pre-activations a1 (a3). dOut [rows,H], w2 [Eg,H,F],
// a1, a3, da1, da3 [rows,F] (a3 and da3 swiglu only).
void expertActivationBackward(Activation act, const float* dOut, const float* w2,
                              const ExpertRows& rows, int H, int F, const float* a1,
                              const float* a3, float* da1, float* da3, cudaStream_t stream);

// TN: dW [Eg,N,K] += dOut_eᵀ · a_e. dOut [rows,N], a [rows,K]; experts without rows add nothing.
void groupedGemmTN(const float* dOut, const float* a, const ExpertRows& rows, int N, int K,
                   float* dW, cudaStream_t stream);

}  // namespace moekit::cuda
