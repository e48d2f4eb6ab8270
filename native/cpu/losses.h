// Auxiliary router losses of DESIGN §3 (L1–L5) as pure functions: inputs are row-major float64
// buffers, each returns the loss value (coefficient included) and, when the gradient buffer is not
// null, overwrites it with d(value)/d(input). The router composes them (modality groups, sequences,
// the global window); ops `losses.*` expose them directly.
#pragma once

#include <cstdint>

#include "../layer/stage_types.h"

namespace moekit::cpu {

// L1 core (Switch / Megatron switch_load_balancing_loss_func):
//   B = coeff · E · Σ_i f_i · P_i,  f_i = counts[i] / (countedTokens · topK),  P_i = mean_t probs[t,i]
// probs [T,E] are the per-token expert probabilities (s̃); counts [E] the top-k selections over
// `countedTokens` tokens (the same T rows for L1 micro, the window for L2 global). f is a constant:
//   gradProbs[t,i] = coeff · E · f_i / T.
// T = 0 or countedTokens = 0 gives 0 (and a zero gradient).
double loadBalance(const double* probs, int T, int E, const int64_t* counts, double countedTokens,
                   int topK, double coeff, double* gradProbs);

// L4 (ST-MoE router z-loss): Z = coeff · mean_t (log Σ_e exp logits[t,e])². logits [T,E]; an entry
// of −∞ is masked out (R2); a row with nothing left contributes 0.
//   gradLogits[t,e] = coeff · 2 · lse_t · softmax(logits_t)[e] / T.
double zLoss(const double* logits, int T, int E, double coeff, double* gradLogits);


// L5 (ERNIE 4.5 router orthogonality) on weight [E,H] with rows normalised, ŵ_e = w_e/‖w_e‖, and
// experts split into groups of groupSizes[0..groups) (Σ = E):
//   All:        coeff · ‖ŴŴᵀ − I‖²_F / E²
//   PerGroup:   coeff · Σ_g ‖Ŵ_gŴ_gᵀ − I‖²_F / E_g²
//   CrossGroup: coeff · Σ_{a<b} ‖Ŵ_aŴ_bᵀ‖²_F / (E_a·E_b)
// Written as Σ_{i,j} c_ij (ŵ_i·ŵ_j − δ_ij)² with symmetric c, dL/dŵ_i = 4 Σ_j c_ij (ŵ_i·ŵ_j − δ_ij) ŵ_j
// and gradWeight_i = (dL/dŵ_i − (dL/dŵ_i·ŵ_i) ŵ_i) / ‖w_i‖. A zero row is left out (gradient 0).
double routerOrthogonality(const double* weight, int E, int H, const int* groupSizes, int groups,
                           OrthMode mode, double coeff, double* gradWeight);

}  // namespace moekit::cpu
