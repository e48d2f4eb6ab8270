#include "router_common.h"

#include <cmath>
#include <cstring>
#include <string>

#include "../core/errors.h"

namespace moekit {

namespace {

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

std::string str(int64_t v) { return std::to_string(v); }

bool finite(double v) { return std::isfinite(v); }

}  // namespace

RouterLayout checkRouterSpec(RouterSpec& s) {
  RouterLayout l;
  if (s.hidden <= 0) fail(ErrorKind::Config, "hidden: expected a positive size, got " + str(s.hidden));
  if (s.groupSizes.empty()) fail(ErrorKind::Config, "experts: expected at least one group");
  l.G = int(s.groupSizes.size());
  l.groupStart.assign(1, 0);
  for (int g = 0; g < l.G; ++g) {
    if (s.groupSizes[g] <= 0)
      fail(ErrorKind::Config,
           "experts[" + str(g) + "].count: expected a positive count, got " + str(s.groupSizes[g]));
    l.groupStart.push_back(l.groupStart.back() + s.groupSizes[g]);
  }
  l.E = l.groupStart.back();
  l.H = s.hidden;
  if (s.groupModality.empty()) s.groupModality.assign(l.G, -1);
  if (int(s.groupModality.size()) != l.G)
    fail(ErrorKind::Config, "experts[].modality: expected one entry per group (" + str(l.G) +
                                "), got " + str(int64_t(s.groupModality.size())));
  for (int g = 0; g < l.G; ++g) {
    if (s.groupModality[g] < -1)
      fail(ErrorKind::Config, "experts[" + str(g) + "].modality: expected a non-negative integer, got " +
                                  str(s.groupModality[g]));
    l.anyModality = l.anyModality || s.groupModality[g] >= 0;
    for (int e = l.groupStart[g]; e < l.groupStart[g + 1]; ++e) l.groupOf.push_back(g);
  }
  const int E = l.E;
  if (s.topK < 1 || s.topK > E)
    fail(ErrorKind::Config, "router.topK: expected an integer in [1, " + str(E) + "], got " + str(s.topK));
  if (s.limitGroups != 0) {
    if (s.limitGroups < 1 || E % s.limitGroups != 0)
      fail(ErrorKind::Config, "router.groupLimited.groups: expected a divisor of the expert count " +
                                  str(E) + ", got " + str(s.limitGroups));
    if (s.limitTopGroups < 1 || s.limitTopGroups > s.limitGroups)
      fail(ErrorKind::Config, "router.groupLimited.topGroups: expected an integer in [1, " +
                                  str(s.limitGroups) + "], got " + str(s.limitTopGroups));
    if (s.limitTopGroups * (E / s.limitGroups) < s.topK)
      fail(ErrorKind::Config, "router.groupLimited.topGroups: " + str(s.limitTopGroups) +
                                  " groups of " + str(E / s.limitGroups) +
                                  " experts leave fewer than router.topK = " + str(s.topK));
  }
  if (!(s.temperature > 0) || !finite(s.temperature))
    fail(ErrorKind::Config, "router.temperature: expected a positive number");
  if (!finite(s.scale)) fail(ErrorKind::Config, "router.scale: expected a finite number");
  if (!(s.loadDecay >= 0 && s.loadDecay <= 1))
    fail(ErrorKind::Config, "router.loadDecay: expected a number in [0, 1]");
  if (!finite(s.loadPenalty)) fail(ErrorKind::Config, "router.loadPenalty: expected a finite number");
  if (!(s.capacityFactor >= 0) || !finite(s.capacityFactor))
    fail(ErrorKind::Config, "capacity.factor: expected a non-negative number");
  if (!finite(s.balanceCoeff) || !finite(s.zCoeff) || !finite(s.orthCoeff))
    fail(ErrorKind::Config, "losses: expected finite coefficients");
  if (!finite(s.biasUpdateRate)) fail(ErrorKind::Config, "router.biasUpdateRate: expected a finite number");
  if (!(s.balanceMicroFraction >= 0) || !finite(s.balanceMicroFraction))
    fail(ErrorKind::Config, "losses.balance.microFraction: expected a non-negative number");
  if (s.balanceMicroFraction > 0 && s.scope != RouterSpec::Scope::Global)
    fail(ErrorKind::Config, "losses.balance.microFraction: mixes a micro-batch term into the 'global' scope; "
                            "expected 0 with another scope");
  return l;
}

namespace {

// Row t of x: Error(Argument) naming its first NaN or Inf.
void checkFiniteRow(const float* row, int t, int H) {
  // An all-ones exponent is an Inf or a NaN: the OR over the row's bits vectorises; the element
  // is looked for only in a bad row.
  uint32_t bad = 0;
  for (int h = 0; h < H; ++h) {
    uint32_t bits;
    std::memcpy(&bits, row + h, sizeof bits);
    bad |= uint32_t((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return;
  for (int h = 0; h < H; ++h) {
    if (std::isfinite(row[h])) continue;
    const char* what = std::isnan(row[h]) ? "NaN" : row[h] > 0 ? "Infinity" : "-Infinity";
    fail(ErrorKind::Argument, "x: expected finite values, got " + std::string(what) + " at x[" + str(t) + ", " + str(h) +
                                  "] (token " + str(t) + ")");
  }
}

}  // namespace

void checkFiniteTokens(const float* x, int T, int H) {
  for (int t = 0; t < T; ++t) checkFiniteRow(x + size_t(t) * H, t, H);
}

void checkFiniteTokens(const DeviceMemory& memory, const float* x, int T, int H) {
  if (memory.isHost()) return checkFiniteTokens(x, T, H);
  const int t = memory.firstNonFiniteRow(x, T, H);
  if (t < 0) return;
  std::vector<float> row(static_cast<size_t>(H));
  memory.toHost(row.data(), x + size_t(t) * H, size_t(H) * sizeof(float));
  checkFiniteRow(row.data(), t, H);
}

void checkRouterInputs(const RouterSpec& sp, const RouterLayout& l, const float* x, int T,
                       const int32_t* modality, const std::vector<int>& seqLens,
                       const RouterParams& p) {
  const bool expertChoice = sp.type == RouterSpec::Type::ExpertChoice;
  if (T < 0) fail(ErrorKind::Shape, "x: expected a non-negative token count, got " + str(T));
  if (T > 0 && !x) fail(ErrorKind::Argument, "x: expected a [T, hidden] f32 buffer, got null");
  if (!p.weight) fail(ErrorKind::Argument, "router.weight: expected an [E, hidden] f32 buffer, got null");
  if (sp.useBias && !p.bias) fail(ErrorKind::Argument, "router.bias: required when router.bias is true");
  if (sp.type == RouterSpec::Type::Sampled && !p.load)
    fail(ErrorKind::Argument, "router.load: required by the 'sampled' router (R10)");
  if (!seqLens.empty()) {
    int64_t sum = 0;
    for (size_t i = 0; i < seqLens.size(); ++i) {
      if (seqLens[i] <= 0)
        fail(ErrorKind::Argument,
             "seqLens[" + str(int64_t(i)) + "]: expected a positive length, got " + str(seqLens[i]));
      sum += seqLens[i];
    }
    if (sum != T)
      fail(ErrorKind::Shape, "seqLens: expected lengths summing to the token count " + str(T) + ", got " + str(sum));
  } else if (sp.scope == RouterSpec::Scope::Sequence && sp.balanceCoeff != 0 && !expertChoice && T > 0) {
    fail(ErrorKind::Argument, "seqLens: required when losses.balance.scope is 'sequence'");
  }
  if (l.anyModality && modality) {
    const int need = expertChoice ? 1 : sp.topK;
    for (int t = 0; t < T; ++t) {
      int n = 0;
      for (int g = 0; g < l.G; ++g)
        if (sp.groupModality[g] < 0 || sp.groupModality[g] == modality[t]) n += sp.groupSizes[g];
      if (n < need)
        fail(ErrorKind::Argument, "modality[" + str(t) + "]: value " + str(modality[t]) + " is accepted by " +
                                      str(n) + " experts, expected at least " + str(need) +
                                      (expertChoice ? "" : " (router.topK)"));
    }
  }
}

std::vector<uint8_t> allowedMask(const RouterSpec& spec, const RouterLayout& l, const int32_t* modality, int T) {
  std::vector<uint8_t> allowed;
  if (!l.anyModality || !modality) return allowed;
  allowed.assign(size_t(T) * l.E, 0);
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < l.E; ++e) {
      const int m = spec.groupModality[l.groupOf[e]];
      allowed[size_t(t) * l.E + e] = m < 0 || m == modality[t];
    }
  return allowed;
}

CountWindow::CountWindow(const RouterLayout& layout)
    : layout_(layout), counts_(size_t(layout.E), 0), groupTokens_(size_t(layout.G), 0) {}

CountWindow::Saved CountWindow::add(const std::vector<int32_t>& counts, int T,
                                    const std::vector<uint8_t>& allowed,
                                    const std::function<void(int64_t*, size_t)>& reducer) {
  Saved saved{counts_, groupTokens_, tokens_};
  const int E = layout_.E, G = layout_.G;
  std::vector<int64_t> update(size_t(E) + 2 + G, 0);
  std::copy(counts.begin(), counts.end(), update.begin());
  update[E] = T;
  for (int g = 0; g < G; ++g) {
    const int e0 = layout_.groupStart[g];
    int64_t accepted = 0;
    for (int t = 0; t < T; ++t) accepted += allowed.empty() || allowed[size_t(t) * E + e0];
    update[E + 1 + g] = accepted;
  }
  update[E + 1 + G] = 1;  // ranks
  if (reducer) reducer(update.data(), update.size());
  share_ = update[E] > 0 ? double(T) / double(update[E]) : 1.0 / double(update[E + 1 + G]);
  for (int e = 0; e < E; ++e) counts_[e] += update[e];
  tokens_ += update[E];
  for (int g = 0; g < G; ++g) groupTokens_[g] += update[E + 1 + g];
  return saved;
}

void CountWindow::restore(Saved saved) {
  counts_ = std::move(saved.counts);
  groupTokens_ = std::move(saved.groupTokens);
  tokens_ = saved.tokens;
}

void CountWindow::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  std::fill(groupTokens_.begin(), groupTokens_.end(), 0);
  tokens_ = 0;
}

}  // namespace moekit
