#include "losses.h"

#include <cmath>
#include <vector>

#include "../core/losses.h"
#include "../core/routing.h"

namespace moekit::cpu {

double loadBalance(const double* probs, int T, int E, const int64_t* counts, double countedTokens,
                   int topK, double coeff, double* gradProbs) {
  if (gradProbs)
    for (int64_t i = 0; i < int64_t(T) * E; ++i) gradProbs[i] = 0;
  if (T <= 0 || countedTokens <= 0 || topK <= 0) return 0;
  std::vector<double> P(E, 0.0);
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) P[e] += probs[int64_t(t) * E + e];
  if (gradProbs)
    for (int e = 0; e < E; ++e) {
      const double grad = losses::loadBalanceProbGrad(
          coeff, E, losses::balanceFraction(double(counts[e]), countedTokens, topK), T);
      for (int t = 0; t < T; ++t) gradProbs[int64_t(t) * E + e] = grad;
    }
  return losses::loadBalanceValue(P.data(), counts, T, E, countedTokens, topK, coeff);
}

double zLoss(const double* logits, int T, int E, double coeff, double* gradLogits) {
  double sum = 0;
  for (int t = 0; t < T; ++t) {
    const double* l = logits + int64_t(t) * E;
    const double lse = routing::logSumExpRow(l, nullptr, E);
    double* g = gradLogits ? gradLogits + int64_t(t) * E : nullptr;
    if (!std::isfinite(lse)) {
      if (g)
        for (int e = 0; e < E; ++e) g[e] = 0;
      continue;
    }
    sum += lse * lse;
    if (g)
      for (int e = 0; e < E; ++e) g[e] = losses::zLossGrad(coeff, lse, l[e], T);
  }
  return T > 0 ? coeff * sum / T : 0;
}

double routerOrthogonality(const double* weight, int E, int H, const int* groupSizes, int groups,
                           OrthMode mode, double coeff, double* gradWeight) {
  // Row norms and the normalised rows ŵ.
  std::vector<double> norm(E), unit(int64_t(E) * H, 0.0);
  for (int e = 0; e < E; ++e) {
    double acc = 0;
    for (int h = 0; h < H; ++h) acc += weight[int64_t(e) * H + h] * weight[int64_t(e) * H + h];
    norm[e] = std::sqrt(acc);
    if (norm[e] > 0)
      for (int h = 0; h < H; ++h) unit[int64_t(e) * H + h] = weight[int64_t(e) * H + h] / norm[e];
  }
  // Pair coefficients c_ij (symmetric) from the mode and the group of each expert.
  std::vector<int> groupOf(E, 0), sizeOf(E, E);
  for (int g = 0, o = 0; g < groups; o += groupSizes[g], ++g)
    for (int e = o; e < o + groupSizes[g] && e < E; ++e) {
      groupOf[e] = g;
      sizeOf[e] = groupSizes[g];
    }
  auto pairCoeff = [&](int i, int j) {
    return losses::orthPairWeight(mode, coeff, E, groupOf[i], groupOf[j], sizeOf[i], sizeOf[j]);
  };
  // Upper triangle only: c and the Gram matrix are symmetric, so (i,j) and (j,i) are one term.
  std::vector<double> dUnit(int64_t(E) * H, 0.0);
  double value = 0;
  for (int i = 0; i < E; ++i) {
    if (!(norm[i] > 0)) continue;
    const double* ui = &unit[int64_t(i) * H];
    for (int j = i; j < E; ++j) {
      const double c = pairCoeff(i, j);
      if (c == 0 || !(norm[j] > 0)) continue;
      const double* uj = &unit[int64_t(j) * H];
      double dot = 0;
      for (int h = 0; h < H; ++h) dot += ui[h] * uj[h];
      const double r = dot - (i == j ? 1.0 : 0.0);
      value += (i == j ? 1 : 2) * c * r * r;
      double* di = &dUnit[int64_t(i) * H];
      double* dj = &dUnit[int64_t(j) * H];
      for (int h = 0; h < H; ++h) di[h] += 4 * c * r * uj[h];
      if (i != j)
        for (int h = 0; h < H; ++h) dj[h] += 4 * c * r * ui[h];
    }
  }
  if (gradWeight)
    for (int e = 0; e < E; ++e) {
      double* g = gradWeight + int64_t(e) * H;
      if (!(norm[e] > 0)) {
        for (int h = 0; h < H; ++h) g[h] = 0;
        continue;
      }
      const double* u = &unit[int64_t(e) * H];
      const double* du = &dUnit[int64_t(e) * H];
      double radial = 0;
      for (int h = 0; h < H; ++h) radial += du[h] * u[h];
      for (int h = 0; h < H; ++h) g[h] = (du[h] - radial * u[h]) / norm[e];
    }
  return value;
}

}  // namespace moekit::cpu
