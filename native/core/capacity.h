// The small pieces of the router's forward decisions (DESIGN C1–C5, R9, R10, B1) that the CPU
// router and the CUDA kernels both evaluate: the capacity formula, the ranking order of capacity
// and expert choice, the R10 load EWMA and the B1 bias step. Written once so that both backends
// round the same float64 expressions the same way.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "hd.h"

namespace moekit::capacity {

// C1: tokens an expert may keep, C = ⌈factor·T·k/E⌉ (R9 uses it with k = topK, factor 1 when 0).
MOEKIT_HD inline int64_t perExpert(double factor, int T, int k, int E) {
  return int64_t(std::ceil(factor * T * k / E));
}

// The ranking of C3 and R9: a (score sa, id a) ranks before b when sa > sb, or sa == sb and a < b
// (ids are token-ordered: slots or tokens, so ties go to the earlier token).
MOEKIT_HD inline bool ranksHigher(double sa, int32_t a, double sb, int32_t b) {
  return sa > sb || (sa == sb && a < b);
}

// The same order as one unsigned 96-bit number, for radix selection: key(sa, a) > key(sb, b)
// exactly when ranksHigher(sa, a, sb, b), for non-NaN scores and ids ≥ 0. hi = the float64 bits
// made monotone (sign flipped for positives, all bits for negatives; −0 is read as +0 so that
// 0 == −0 stays a tie), lo = ~id (an earlier id is larger).
struct RankKey {
  uint64_t hi;
  uint32_t lo;
};

MOEKIT_HD inline RankKey rankKey(double score, int32_t id) {
  const double v = score == 0 ? 0.0 : score;
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  const uint64_t hi = bits >> 63 ? ~bits : bits | (uint64_t(1) << 63);
  return RankKey{hi, ~uint32_t(id)};
}

MOEKIT_HD inline bool atLeast(RankKey a, RankKey b) {
  return a.hi > b.hi || (a.hi == b.hi && a.lo >= b.lo);
}

// R10: ℓ ← float((1 − decay)·ℓ + decay·f), in float64, rounded once to f32. On a device the
// products and the sum are rounded separately (no FMA contraction), as on the host.
MOEKIT_HD inline float loadEwma(double decay, double load, double f) {
#if defined(__CUDA_ARCH__)
  return float(__dadd_rn(__dmul_rn(1 - decay, load), __dmul_rn(decay, f)));
#else
  return float((1 - decay) * load + decay * f);
#endif
}

// B1: bias + rate·sign(mean − count), in float64, rounded once to f32 (rate·sign is exact, so a
// contracted FMA gives the same bits).
MOEKIT_HD inline float biasStep(float bias, double rate, double mean, double count) {
  const double d = mean - count;
  const double sign = d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0;
  return float(double(bias) + rate * sign);
}

}  // namespace moekit::capacity
