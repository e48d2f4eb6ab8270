// Row-wise routing math of DESIGN §3, shared by the CPU router and the CUDA kernels: one token row
// of logits (R1, R8), scores (R3), selection keys (R4, R10), group limiting (R5), top-k (R6) and
// weights (R7). Everything is float64 so that decisions equal the float64 reference.
//
// Vocabulary (one token t, E experts):
//   logits l[E]   R1 x·Wᵀ, or R8 cos(x, W_e)/temperature
//   allowed[E]    R2 modality mask (nullptr = every expert allowed)
//   scores s[E]   R3 softmax over allowed, or sigmoid·allowed; what the weights and losses see
//   keys q[E]     what top-k ranks: R4 s + bias, or R10 the sampled key; −∞ = never selected
// Order of keys: a ranks before b when q[a] > q[b], or q[a] == q[b] and a < b (R6 tie rule).
// The row functions are composed of per-expert pieces (a score, a key, a comparison) and the
// order-dependent sums; the CUDA kernels (native/cuda/routing.cu) spread the pieces over the
// lanes of a warp and add the sums in the same order, so both sides get the same bits.
#pragma once

#include <cmath>
#include <cstdint>

#include "hd.h"
#include "philox.h"

namespace moekit::routing {

enum class ScoreFn { Softmax, Sigmoid };

// R1: l[e] = Σ_h x[h]·W[e,h], accumulated in float64. x [H], W [E,H] row-major.
MOEKIT_HD inline void linearLogitsRow(const float* x, const float* W, int H, int E, double* l) {
  // Four interleaved partial sums (h mod 4), added at the end: a fixed order that compilers can
  // turn into one 4-wide double FMA per step. Each f32 product is exact in double.
  for (int e = 0; e < E; ++e) {
    const float* w = W + int64_t(e) * H;
    double acc[4] = {0, 0, 0, 0};
    int h = 0;
    for (; h + 4 <= H; h += 4)
      for (int j = 0; j < 4; ++j) acc[j] += double(x[h + j]) * double(w[h + j]);
    for (; h < H; ++h) acc[h & 3] += double(x[h]) * double(w[h]);
    l[e] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
}

// Euclidean norm of a float row, in float64.
MOEKIT_HD inline double rowNorm(const float* v, int n) {
  double acc = 0;
  for (int i = 0; i < n; ++i) acc += double(v[i]) * double(v[i]);
  return std::sqrt(acc);
}

// R8: cos[e] = x·W_e / (‖x‖·‖W_e‖) and l[e] = cos[e]/temperature. wNorm [E] = ‖W_e‖ (rowNorm).
// A zero row (‖x‖ = 0 or ‖W_e‖ = 0) has cosine 0.
MOEKIT_HD inline void cosineLogitsRow(const float* x, const float* W, const double* wNorm, int H,
                                      int E, double temperature, double* cos, double* l) {
  const double xNorm = rowNorm(x, H);
  linearLogitsRow(x, W, H, E, cos);
  for (int e = 0; e < E; ++e) {
    const double d = xNorm * wNorm[e];
    cos[e] = d > 0 ? cos[e] / d : 0.0;
    l[e] = cos[e] / temperature;
  }
}

// R2: whether expert e may take the token (allowed nullptr = every expert).
MOEKIT_HD inline bool isAllowed(const uint8_t* allowed, int e) { return !allowed || allowed[e]; }

// ---- R3 pieces: what one expert's score needs, and the one order-dependent step (the sum).
// The CUDA kernels compute the per-expert pieces in parallel and the sum in this same order, so
// that their scores equal scoresRow's bit for bit.

// R3 sigmoid score of one expert: sigmoid(l) when allowed, else 0.
MOEKIT_HD inline double sigmoidScore(double l, bool allowed) {
  return allowed ? 1.0 / (1.0 + std::exp(-l)) : 0.0;
}

// One step of the max over allowed logits, starting from m = −∞: NaN logits never win. On the
// values it keeps it is an exact max, so any grouping of the steps gives the same value (up to the
// sign of a zero, which exp(l − m) does not see).
MOEKIT_HD inline double foldAllowedMax(double m, double l, bool allowed) {
  return allowed && l > m ? l : m;
}

// R3 softmax numerator of one expert: exp(l − m) when allowed (m = max over allowed), else 0.
MOEKIT_HD inline double softmaxNumerator(double l, double m, bool allowed) {
  return allowed ? std::exp(l - m) : 0.0;
}

// Σ v[0..n) added in index order (the softmax denominator).
MOEKIT_HD inline double sumRow(const double* v, int n) {
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += v[i];
  return sum;
}

// R3: softmax over the allowed experts (others 0), or sigmoid(l)·allowed. At least one expert
// must be allowed for softmax.
MOEKIT_HD inline void scoresRow(const double* l, const uint8_t* allowed, int E, ScoreFn fn,
                                double* s) {
  if (fn == ScoreFn::Sigmoid) {
    for (int e = 0; e < E; ++e) s[e] = sigmoidScore(l[e], isAllowed(allowed, e));
    return;
  }
  double m = -INFINITY;
  for (int e = 0; e < E; ++e) m = foldAllowedMax(m, l[e], isAllowed(allowed, e));
  for (int e = 0; e < E; ++e) s[e] = softmaxNumerator(l[e], m, isAllowed(allowed, e));
  const double sum = sumRow(s, E);
  for (int e = 0; e < E; ++e) s[e] /= sum;
}

// log Σ_{allowed e} exp(l[e]) (L4); −∞ when nothing is allowed.
MOEKIT_HD inline double logSumExpRow(const double* l, const uint8_t* allowed, int E) {
  double m = -INFINITY;
  for (int e = 0; e < E; ++e) m = foldAllowedMax(m, l[e], isAllowed(allowed, e));
  if (m == -INFINITY) return m;
  double sum = 0;
  for (int e = 0; e < E; ++e)
    if (isAllowed(allowed, e)) sum += std::exp(l[e] - m);
  return m + std::log(sum);
}

// R4: q[e] = s[e] + bias[e] for allowed experts (bias nullptr = 0), −∞ otherwise. The bias only
// selects; weights are taken from s. biasKey: the key of expert e with score s.
MOEKIT_HD inline double biasKey(double s, const float* bias, int e, bool allowed) {
  return allowed ? s + (bias ? double(bias[e]) : 0.0) : -INFINITY;
}

MOEKIT_HD inline void biasKeyRow(const double* s, const float* bias, const uint8_t* allowed, int E,
                                 double* q) {
  for (int e = 0; e < E; ++e) q[e] = biasKey(s[e], bias, e, isAllowed(allowed, e));
}

// R10 Gumbel noise g = −log(−log u) of token t, expert i at forward `step`: u = philoxUniform of
// word (i mod 4) of Philox-4x32-10 with key (seed mod 2³², step mod 2³²) and counter
// (t, ⌊i/4⌋, 0, 0). The high 32 bits of the seed do not enter the key.
MOEKIT_HD inline double sampledNoise(uint64_t seed, uint64_t step, int t, int i) {
  const Philox4 r = philox4x32_10(Philox4{{uint32_t(t), uint32_t(i / 4), 0u, 0u}}, uint32_t(seed),
                                  uint32_t(step));
  return -std::log(-std::log(philoxUniform(r.w[i % 4])));
}

// R10: q[e] = log s[e] − λ·log(load[e] + 1e-6) + g(t, e) for allowed experts, −∞ otherwise.
// load [E] is the EWMA load estimate ℓ (as float64). sampledKey: the key of token t, expert e with
// score s and load ℓ = load.
MOEKIT_HD inline double sampledKey(double s, double load, double penalty, bool allowed,
                                   uint64_t seed, uint64_t step, int t, int e) {
  return allowed ? std::log(s) - penalty * std::log(load + 1e-6) + sampledNoise(seed, step, t, e)
                 : -INFINITY;
}

MOEKIT_HD inline void sampledKeyRow(const double* s, const double* load, double penalty,
                                    const uint8_t* allowed, int E, uint64_t seed, uint64_t step,
                                    int t, double* q) {
  for (int e = 0; e < E; ++e)
    q[e] = sampledKey(s[e], load[e], penalty, isAllowed(allowed, e), seed, step, t, e);
}

// ---- R6 pieces. Among candidates (finite keys after the previous pick) the order is total, so
// the best one is the same whatever order they are compared in (the CUDA kernels reduce over a
// warp).

// Whether (a, ia) ranks before (b, ib): higher key, ties → lower index.
MOEKIT_HD inline bool ranksBefore(double a, int ia, double b, int ib) {
  return a > b || (a == b && ia < ib);
}

// Whether expert e with key `key` is a candidate to rank right after (afterKey, afterIdx):
// its key is finite or +∞ (−∞ and NaN are never selected) and it ranks after that pair
// (afterIdx = −1: every expert does).
MOEKIT_HD inline bool followsInKeyOrder(double key, int e, double afterKey, int afterIdx) {
  if (!(key > -INFINITY)) return false;  // also skips NaN
  return afterIdx < 0 || ranksBefore(afterKey, afterIdx, key, e);
}

// Whether candidate (key, e) beats the best so far (bestIdx = −1: none yet).
MOEKIT_HD inline bool beatsBest(double key, int e, double bestKey, int bestIdx) {
  return bestIdx < 0 || ranksBefore(key, e, bestKey, bestIdx);
}

// The expert that ranks right after (afterKey, afterIdx) in the R6 order, skipping −∞ keys;
// afterIdx = −1 asks for the first. Returns −1 when none is left. O(E).
MOEKIT_HD inline int nextInKeyOrder(const double* q, int E, double afterKey, int afterIdx) {
  int best = -1;
  double bestKey = 0;
  for (int e = 0; e < E; ++e)
    if (followsInKeyOrder(q[e], e, afterKey, afterIdx) && beatsBest(q[e], e, bestKey, best)) {
      best = e;
      bestKey = q[e];
    }
  return best;
}

// R6: idx[0..k) = the k best experts by key, best first, ties → lower index. Returns how many
// were found (< k only when fewer than k keys are finite).
MOEKIT_HD inline int topKRow(const double* q, int E, int k, int32_t* idx) {
  int prev = -1;
  double prevKey = 0;
  for (int j = 0; j < k; ++j) {
    const int e = nextInKeyOrder(q, E, prevKey, prev);
    if (e < 0) return j;
    idx[j] = e;
    prev = e;
    prevKey = q[e];
  }
  return k;
}

// R5 score of one group's keys qg [n]: the sum of its two best keys (the best one when n = 1;
// −∞ when it has fewer finite keys than that, as a sum over −∞ entries would give).
MOEKIT_HD inline double groupScoreOf(const double* qg, int n) {
  const int take = n > 1 ? 2 : 1;
  int32_t best[2];
  const int found = topKRow(qg, n, take, best);
  return found < take ? -INFINITY : take == 1 ? qg[best[0]] : qg[best[0]] + qg[best[1]];
}

// R5: whether group g is among the `topGroups` best of groupScore [groups] (ties → lower group):
// fewer than topGroups groups rank above it.
MOEKIT_HD inline bool groupKept(const double* groupScore, int groups, int topGroups, int g) {
  int above = 0;
  for (int h = 0; h < groups; ++h)
    if (ranksBefore(groupScore[h], h, groupScore[g], g)) ++above;
  return above < topGroups;
}

// R5: experts split into `groups` contiguous groups of E/groups, scored by groupScoreOf; the
// `topGroups` best groups keep their keys, the others' keys become −∞. groupScore [groups] is
// scratch.
MOEKIT_HD inline void limitGroupsRow(double* q, int E, int groups, int topGroups,
                                     double* groupScore) {
  const int n = E / groups;
  for (int g = 0; g < groups; ++g) groupScore[g] = groupScoreOf(q + g * n, n);
  for (int g = 0; g < groups; ++g)
    if (!groupKept(groupScore, groups, topGroups, g))
      for (int e = g * n; e < (g + 1) * n; ++e) q[e] = -INFINITY;
}

// R7 divisor of a token's weights: Σ_j s[idx[j]] added in slot order j = 0..k−1 when `normalize`
// and the sum is positive, else 1.
MOEKIT_HD inline double weightsDivisor(const double* s, const int32_t* idx, int k, bool normalize) {
  double sum = 0;
  for (int j = 0; j < k; ++j) sum += s[idx[j]];
  return normalize && sum > 0 ? sum : 1.0;
}

// R7 weight of one slot whose expert has score s.
MOEKIT_HD inline double weightOf(double s, double divisor, double scale) { return s / divisor * scale; }

// R7: w[j] = s[idx[j]], divided by Σ_j s[idx[j]] when `normalize` (and the sum is positive), times
// `scale`.
MOEKIT_HD inline void weightsRow(const double* s, const int32_t* idx, int k, bool normalize,
                                 double scale, double* w) {
  const double div = weightsDivisor(s, idx, k, normalize);
  for (int j = 0; j < k; ++j) w[j] = weightOf(s[idx[j]], div, scale);
}

// Backward of R7: ds[idx[j]] += dL/ds from dw [k] = dL/dw (ds is not cleared).
//   normalize: w_j = scale·s_j/S, S = Σ_m s_m  →  ds_j = scale·(dw_j − Σ_m dw_m·s_m/S)/S
MOEKIT_HD inline void weightsRowBackward(const double* s, const int32_t* idx, int k, bool normalize,
                                         double scale, const double* dw, double* ds) {
  double sum = 0, dot = 0;
  for (int j = 0; j < k; ++j) {
    sum += s[idx[j]];
    dot += dw[j] * s[idx[j]];
  }
  if (!(normalize && sum > 0)) {
    for (int j = 0; j < k; ++j) ds[idx[j]] += scale * dw[j];
    return;
  }
  for (int j = 0; j < k; ++j) ds[idx[j]] += scale * (dw[j] - dot / sum) / sum;
}

// Backward of R3: dl[e] += dL/dl[e] given ds = dL/ds (dl is not cleared).
//   softmax: dl_e = s_e·(ds_e − Σ_m s_m·ds_m);  sigmoid: dl_e = ds_e·s_e·(1 − s_e) (allowed only)
MOEKIT_HD inline void scoresRowBackward(const double* s, const uint8_t* allowed, int E, ScoreFn fn,
                                        const double* ds, double* dl) {
  if (fn == ScoreFn::Sigmoid) {
    for (int e = 0; e < E; ++e)
      if (isAllowed(allowed, e)) dl[e] += ds[e] * s[e] * (1.0 - s[e]);
    return;
  }
  double dot = 0;
  for (int e = 0; e < E; ++e) dot += s[e] * ds[e];
  for (int e = 0; e < E; ++e) dl[e] += s[e] * (ds[e] - dot);
}

}  // namespace moekit::routing
