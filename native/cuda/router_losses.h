// The auxiliary router losses of DESIGN §3 on a CUDA device, with their gradients: L1 micro / L2
// global / L3 sequence balance (with modality balance groups), L4 z, L5 orthogonality. The same
// values and gradients as cpu::Router (computeBalance, the z and orthogonality parts of forward),
// whose formulas come from core/losses.h and core/routing.h like these kernels' (router_losses.cu:
// L1–L4, router_orthogonality.cu: L5).
//
// Pointers are DEVICE memory unless marked HOST; work is enqueued on `stream` and nothing waits:
// each launcher writes its loss value (coefficient included) into the device word *value.
// Arguments are validated first: Error(Shape/Argument) naming the argument; a failed CUDA call
// throws Error(Device).
//
// Equality with the CPU: every gradient element is computed by the CPU's expressions in the CPU's
// order except where a sum over tokens or over hidden is involved: the balance column sums P, the
// orthogonality row norms and radial components, and each loss value's final total are
// fixed-order trees (column_sums.h; a block tree per row for the norms) instead of sequential
// loops. Values and float64
// gradients therefore agree with the CPU to ~1e-15 relative (measured ≤ 5e-15 with H = 300), and
// are the same bits on every run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "../layer/stage_types.h"

namespace moekit::cuda {

struct BalanceArgs {
  int T = 0, E = 0, k = 0;
  bool sigmoid = false;  // s̃ = s/Σs (sigmoid) else s̃ = s
  double coeff = 0;
  RouterSpec::Scope scope = RouterSpec::Scope::Micro;
  std::vector<int> groupStart;  // HOST [G+1] balance groups: the expert groups when the tokens carry
                                // a modality mask, else {0, E} (cpu::Router::computeBalance)
  std::vector<int> seqLens;     // HOST, scope Sequence (Σ = T); ignored otherwise
  std::vector<int64_t> windowCounts;       // HOST [E], scope Global: window counts incl. this forward
  std::vector<int64_t> windowGroupTokens;  // HOST [G], scope Global: counted tokens per balance group
};

// L1/L2/L3 exactly as cpu::Router::computeBalance: per segment (the whole batch, or each sequence
// of seqLens weighted 1/#sequences) and balance group g (experts [groupStart[g], groupStart[g+1]),
// tokens S_g = those allowed to its first expert), coeff·|G|·Σ_i f_i·P_i weighted |S_g|/segment
// length; f from the R6 selections selIdx [T,k] of S_g (Global: from the window). Writes the value
// and ADDS d(value)/d logits into dLogits [T,E] f64 through s̃ → s → logits (R3 backward,
// routing::scoresRowBackward with the sigmoid or softmax of `sigmoid`). s [T,E] f64 R3 scores;
// allowed [T,E] u8 R2 mask or null (all allowed).
void balanceLoss(const BalanceArgs& a, const double* s, const uint8_t* allowed,
                 const int32_t* selIdx, double* dLogits, double* value, cudaStream_t stream);

// L4: coeff·mean_t lse(allowed logits_t)², a row with no allowed (or a non-finite) logsumexp adding
// 0. logits [T,E] f64; allowed as above. ADDS its gradient into dLogits [T,E].
void zLoss(int T, int E, double coeff, const double* logits, const uint8_t* allowed,
           double* dLogits, double* value, cudaStream_t stream);

// L5 on W [E,H] f32 (rows normalised in f64; a zero row is left out and gets gradient 0) with the
// expert groups groupSizes (HOST, Σ = E) and mode. OVERWRITES dW [E,H] f64 with its gradient.
void orthogonalityLoss(int E, int H, const std::vector<int>& groupSizes, OrthMode mode,
                       double coeff, const float* W, double* dW, double* value, cudaStream_t stream);

}  // namespace moekit::cuda
