// Per-row and per-element pieces of the auxiliary router losses of DESIGN §3 (L1–L5), shared by
// the CPU losses (native/cpu/losses.cc) and the CUDA loss kernels (native/cuda/router_losses.cu),
// so both evaluate the same expressions in the same order. Everything is float64.
//
//   L1  B = coeff·E·Σ_i f_i·P_i,  f_i = count_i/(counted·k),  P_i = (Σ_t s̃[t,i])/T
//       s̃ = s/Σ_e s (sigmoid scores) or s (softmax)          ∂B/∂s̃[t,i] = coeff·E·f_i/T
//   L4  Z = coeff·mean_t lse_t²,  lse_t = log Σ_{allowed e} exp l[t,e]   (routing::logSumExpRow)
//       ∂Z/∂l[t,e] = coeff·2·lse_t·softmax(l_t)[e]/T
//   L5  Σ_{i,j} c_ij (ŵ_i·ŵ_j − δ_ij)² with the pair weight c_ij of the mode (orthPairWeight)
#pragma once

#include <cmath>
#include <cstdint>

#include "hd.h"

namespace moekit {

// L5 modes (DESIGN §3): which expert pairs the orthogonality loss sees.
enum class OrthMode { All, PerGroup, CrossGroup };

namespace losses {

// ---- L1 ------------------------------------------------------------------------------------------

// s̃ of one token row [E]: s/Σs for sigmoid scores (all 0 when Σs = 0), s itself for softmax.
// Returns the divisor the backward needs: Σs for sigmoid, 1 for softmax.
MOEKIT_HD inline double balanceProbsRow(const double* s, int E, bool sigmoid, double* sn) {
  if (!sigmoid) {
    for (int e = 0; e < E; ++e) sn[e] = s[e];
    return 1.0;
  }
  double sum = 0;
  for (int e = 0; e < E; ++e) sum += s[e];
  for (int e = 0; e < E; ++e) sn[e] = sum > 0 ? s[e] / sum : 0.0;
  return sum;
}

// Backward of balanceProbsRow, in place: d [E] holds ∂/∂s̃ on entry and ∂/∂s on return.
//   sigmoid: ∂/∂s_e = (∂/∂s̃_e − Σ_m ∂/∂s̃_m·s̃_m)/Σs (0 when Σs = 0); softmax: unchanged.
// sn [E] is the row balanceProbsRow wrote, sum what it returned.
MOEKIT_HD inline void balanceProbsRowBackward(const double* sn, double sum, int E, bool sigmoid,
                                              double* d) {
  if (!sigmoid) return;
  double dot = 0;
  for (int e = 0; e < E; ++e) dot += d[e] * sn[e];
  for (int e = 0; e < E; ++e) d[e] = sum > 0 ? (d[e] - dot) / sum : 0.0;
}

// f_i = count_i/(counted·k): the share of the `counted` tokens' top-k selections that went to i.
MOEKIT_HD inline double balanceFraction(double count, double counted, int topK) {
  return count / (counted * topK);
}

// L1 of one balance group of E experts over T tokens from the column sums colSums [E] = Σ_t s̃[t,i]
// and the selection counts [E] (any integer type) over `counted` tokens. 0 when T, counted or topK
// is not positive.
template <class Count>
MOEKIT_HD inline double loadBalanceValue(const double* colSums, const Count* counts, int T, int E,
                                         double counted, int topK, double coeff) {
  if (T <= 0 || counted <= 0 || topK <= 0) return 0;
  double sum = 0;
  for (int e = 0; e < E; ++e)
    sum += balanceFraction(double(counts[e]), counted, topK) * (colSums[e] / T);
  return coeff * E * sum;
}

// ∂(loadBalanceValue)/∂s̃[t,i] for every token t of the group: coeff·E·f_i/T.
MOEKIT_HD inline double loadBalanceProbGrad(double coeff, int E, double f, int T) {
  return coeff * E * f / T;
}

// ---- L4 ------------------------------------------------------------------------------------------

// ∂Z/∂l[t,e] of an allowed entry, lse = the row's finite logsumexp, T tokens.
MOEKIT_HD inline double zLossGrad(double coeff, double lse, double logit, int T) {
  return coeff * 2 * lse * std::exp(logit - lse) / T;
}

// ---- L5 ------------------------------------------------------------------------------------------

// c_ij of the orthogonality loss for experts i, j of groups gi, gj with gi's and gj's sizes si, sj,
// E experts in all; symmetric in (i, j).
//   All: coeff/E²   PerGroup: coeff/si² within a group, else 0
//   CrossGroup: coeff/(2·si·sj) across groups (each unordered pair is counted as (i,j) and (j,i)),
//   else 0
MOEKIT_HD inline double orthPairWeight(OrthMode mode, double coeff, int E, int gi, int gj, int si,
                                       int sj) {
  switch (mode) {
    case OrthMode::All: return coeff / (double(E) * E);
    case OrthMode::PerGroup: return gi == gj ? coeff / (double(si) * si) : 0.0;
    case OrthMode::CrossGroup: return gi != gj ? coeff / (2.0 * si * sj) : 0.0;
  }
  return 0.0;
}

}  // namespace losses
}  // namespace moekit
