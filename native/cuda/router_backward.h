// cpu::Router::backward on a CUDA device: routing-weight gradients → scores (R7 or R9) → logits
// (R3, plus the aux-loss logit gradients of router_losses.h) → x and router.weight (R1, or R8 with
// its self terms), plus the orthogonality gradient. Kernels and their order in router_backward.cu.
//
// Pointers are DEVICE memory; work is enqueued on `stream` and not waited for. Arguments are
// validated first (Error(Shape/Argument) naming the argument); a failed CUDA call throws
// Error(Device).
//
// Equality with the CPU: everything up to the f32 matrix A[t,e] = dl·α is the CPU's expressions
// in the CPU's order (bit-equal under the SIMT emulator). dx += A·W and dW += Aᵀ·x are the grouped
// GEMM kernels of grouped_gemm.h (one group of one expert): each element one fp32 fmaf chain in
// ascending order of the inner index (e for dx, t for dW), where the CPU's sgemm blocks and
// vectorises its sums; and the R8 self term Σ_t dl·βw of each expert is a fixed-order column sum
// (column_sums.h) where the CPU loops over tokens. So dx and dW agree with the CPU to fp32
// rounding of those sums (‖Δ‖/‖·‖ ~1e-7), and are the same bits on every run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../core/routing.h"

namespace moekit::cuda {

struct RouterBackwardArgs {
  int T = 0, E = 0, H = 0, k = 0;                   // k = 0 for expert-choice
  routing::ScoreFn fn = routing::ScoreFn::Softmax;  // affinity uses Softmax
  bool expertChoice = false, affinity = false, normalize = false;
  double scale = 1.0, temperature = 1.0;
};

// s [T,E] f64 R3 scores; allowed [T,E] u8 R2 mask or null.
// Top-k: idx [T,k] final experts, dSlot [T,k] f64 = d objective / d weight of each slot (0 for a
// dropped slot), through routing::weightsRowBackward (R7). Expert-choice: ecN picks (ecToken,
// ecExpert, ecDw f32), each adding ecDw into ds[token, expert] (R9; the (token, expert) pairs are
// distinct, as R9 produces them; a pair out of range is skipped); idx and dSlot unused.
// dLogitsAux [T,E] f64 (the loss gradients; null = none) is added to the logit gradient.
// x [T,H], W [E,H] f32 as in the forward; affinity (R8) also reads xNorm [T], wNorm [E] and
// cos [T,E] f64 (null otherwise). dWeightOrth [E,H] f64 (null = none) is added to dW.
// dx [T,H] and dW [E,H] f32 are ADDED to.
void routerBackward(const RouterBackwardArgs& a, const double* s, const int32_t* idx,
                    const double* dSlot, const int32_t* ecToken, const int32_t* ecExpert,
                    const float* ecDw, int64_t ecN, const uint8_t* allowed,
                    const double* dLogitsAux, const float* x, const float* W, const double* xNorm,
                    const double* wNorm, const double* cos, const double* dWeightOrth, float* dx,
                    float* dW, cudaStream_t stream);

}  // namespace moekit::cuda
