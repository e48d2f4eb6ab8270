// cuda::routeTopK (native/cuda/routing.cu, run on the SIMT emulator) against cpu::Router's
// decisions: Router::forward(training = true) on the same inputs, then indices equal and weights
// bit-equal (both run core/routing.h in float64 and round once to f32). The scores s are compared
// bit for bit with core/routing.h run on the host (the router keeps them private). Built with the
// emulator's harness (test/emu/harness.h, main.cc); run by test/cuda-routing.test.ts.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/routing.h"
#include "cpu/router.h"
#include "cuda/routing.h"
#include "harness.h"

namespace {

using moekit::RouterSpec;

struct Inputs {
  int T = 0;
  std::vector<float> x, weight, bias, load;
  std::vector<int32_t> modality;  // empty = none
};

int expertCount(const RouterSpec& spec) {
  int E = 0;
  for (int g : spec.groupSizes) E += g;
  return E;
}

Inputs makeInputs(const RouterSpec& spec, int T, uint32_t seed, bool withModality) {
  std::mt19937 rng(seed);
  const auto uniform = [&](float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); };
  const int E = expertCount(spec), H = spec.hidden;
  Inputs in;
  in.T = T;
  for (int i = 0; i < T * H; ++i) in.x.push_back(uniform(-1, 1));
  for (int i = 0; i < E * H; ++i) in.weight.push_back(uniform(-1, 1) / std::sqrt(float(H)));
  for (int e = 0; e < E; ++e) in.bias.push_back(uniform(-0.05f, 0.05f));
  for (int e = 0; e < E; ++e) in.load.push_back(uniform(0.01f, 0.3f));
  if (withModality)
    for (int t = 0; t < T; ++t) in.modality.push_back(int32_t(rng() % 2));
  return in;
}

// The R2 mask cpu::Router builds from the modality (empty when no modality).
std::vector<uint8_t> allowedMask(const RouterSpec& spec, const Inputs& in) {
  std::vector<uint8_t> allowed;
  if (in.modality.empty()) return allowed;
  std::vector<int> groupOf;
  for (size_t g = 0; g < spec.groupSizes.size(); ++g)
    for (int i = 0; i < spec.groupSizes[g]; ++i) groupOf.push_back(int(g));
  for (int t = 0; t < in.T; ++t)
    for (int g : groupOf) {
      const int m = spec.groupModality[size_t(g)];
      allowed.push_back(m < 0 || m == in.modality[size_t(t)]);
    }
  return allowed;
}

// The R3 scores on the host with core/routing.h (what cpu::Router computes internally).
std::vector<double> hostScores(const RouterSpec& spec, const Inputs& in, const std::vector<uint8_t>& allowed) {
  namespace r = moekit::routing;
  const int E = expertCount(spec), H = spec.hidden;
  const bool affinity = spec.type == RouterSpec::Type::Affinity;
  std::vector<double> wNorm(static_cast<size_t>(E)), l(static_cast<size_t>(E)), cos(static_cast<size_t>(E));
  std::vector<double> s(size_t(in.T) * E);
  for (int e = 0; e < E; ++e) wNorm[size_t(e)] = r::rowNorm(&in.weight[size_t(e) * H], H);
  for (int t = 0; t < in.T; ++t) {
    const float* xt = &in.x[size_t(t) * H];
    if (affinity)
      r::cosineLogitsRow(xt, in.weight.data(), wNorm.data(), H, E, spec.temperature, cos.data(), l.data());
    else
      r::linearLogitsRow(xt, in.weight.data(), H, E, l.data());
    r::scoresRow(l.data(), allowed.empty() ? nullptr : &allowed[size_t(t) * E], E,
                 affinity ? r::ScoreFn::Softmax : spec.score, &s[size_t(t) * E]);
  }
  return s;
}

void compare(const RouterSpec& spec, const Inputs& in, uint64_t step) {
  const int E = expertCount(spec);
  moekit::cpu::Router router(spec);
  router.setStep(step);
  std::vector<float> bias = in.bias, load = in.load;  // the router may update them
  const moekit::RouterParams params{in.weight.data(), bias.data(), load.data()};
  moekit::Routing want;
  router.forward(in.x.data(), in.T, in.modality.empty() ? nullptr : in.modality.data(), {}, params, want, true);

  const std::vector<uint8_t> allowed = allowedMask(spec, in);
  moekit::cuda::TopKRouting got;
  moekit::cuda::routeTopK(spec, in.x.data(), in.T, in.weight.data(), in.bias.data(), in.load.data(),
                          allowed.empty() ? nullptr : allowed.data(), step, got);

  EMU_EXPECT(got.tokens == in.T && got.k == spec.topK && got.experts == E, "shape");
  EMU_EXPECT(want.indices.size() == got.indices.size(), "indices size");
  for (size_t i = 0; i < got.indices.size(); ++i)
    EMU_EXPECT(got.indices[i] == want.indices[i],
               "indices[" + std::to_string(i) + "]: cuda " + std::to_string(got.indices[i]) + ", cpu " +
                   std::to_string(want.indices[i]));
  EMU_EXPECT(want.weights.size() == got.weights.size(), "weights size");
  for (size_t i = 0; i < got.weights.size(); ++i)
    EMU_EXPECT(std::memcmp(&got.weights[i], &want.weights[i], sizeof(float)) == 0,
               "weights[" + std::to_string(i) + "]: cuda " + std::to_string(got.weights[i]) + ", cpu " +
                   std::to_string(want.weights[i]));
  const std::vector<double> s = hostScores(spec, in, allowed);
  EMU_EXPECT(got.scores.size() == s.size(), "scores size");
  EMU_EXPECT(std::memcmp(got.scores.data(), s.data(), s.size() * sizeof(double)) == 0, "scores bit-equal");
  // The case must exercise something: not every token picks the same experts.
  bool varied = false;
  for (int t = 1; t < in.T && !varied; ++t)
    varied = got.indices[size_t(t) * spec.topK] != got.indices[0];
  EMU_EXPECT(varied, "every token chose the same first expert: a degenerate case");
}

RouterSpec baseSpec(int H, std::vector<int> groups, int k) {
  RouterSpec spec;
  spec.hidden = H;
  spec.groupSizes = std::move(groups);
  spec.topK = k;
  return spec;
}

EMU_CASE("softmax top-2 equals cpu::Router (E 8, H 19, T 37)") {
  RouterSpec spec = baseSpec(19, {8}, 2);
  compare(spec, makeInputs(spec, 37, 1, false), 0);
}

EMU_CASE("softmax top-2 normalized with scale equals cpu::Router (E 6 in two groups, H 33, T 130)") {
  RouterSpec spec = baseSpec(33, {4, 2}, 2);
  spec.normalize = true;
  spec.scale = 1.75;
  compare(spec, makeInputs(spec, 130, 2, false), 0);
}

EMU_CASE("sigmoid + bias + group-limited top-4 with scale equals cpu::Router (E 16, 4 groups, top 2)") {
  RouterSpec spec = baseSpec(24, {16}, 4);
  spec.score = RouterSpec::Score::Sigmoid;
  spec.useBias = true;
  spec.limitGroups = 4;
  spec.limitTopGroups = 2;
  spec.normalize = true;
  spec.scale = 2.5;
  compare(spec, makeInputs(spec, 53, 3, false), 0);
}

EMU_CASE("affinity (cosine / temperature 0.3) top-2 equals cpu::Router (E 8, H 21)") {
  RouterSpec spec = baseSpec(21, {8}, 2);
  spec.type = RouterSpec::Type::Affinity;
  spec.temperature = 0.3;
  compare(spec, makeInputs(spec, 41, 4, false), 0);
}

EMU_CASE("sampled (seed, step 3, load penalty 0.7) top-2 equals cpu::Router (E 12)") {
  RouterSpec spec = baseSpec(16, {12}, 2);
  spec.type = RouterSpec::Type::Sampled;
  spec.seed = 0x1234567890abULL;
  spec.loadPenalty = 0.7;
  compare(spec, makeInputs(spec, 45, 5, false), 3);
}

EMU_CASE("modality mask (groups -1/0/1), softmax top-3 equals cpu::Router") {
  RouterSpec spec = baseSpec(20, {4, 4, 4}, 3);
  spec.groupModality = {-1, 0, 1};
  compare(spec, makeInputs(spec, 50, 6, true), 0);
}

EMU_CASE("modality mask with sigmoid + bias + group-limited top-2 equals cpu::Router") {
  RouterSpec spec = baseSpec(20, {4, 4, 4}, 2);
  spec.groupModality = {-1, 0, 1};
  spec.score = RouterSpec::Score::Sigmoid;
  spec.useBias = true;
  spec.limitGroups = 3;
  spec.limitTopGroups = 1;
  compare(spec, makeInputs(spec, 50, 7, true), 0);
}

EMU_CASE("modality mask with sampled routing (step 9) equals cpu::Router") {
  RouterSpec spec = baseSpec(20, {4, 4, 4}, 2);
  spec.groupModality = {-1, 0, 1};
  spec.type = RouterSpec::Type::Sampled;
  spec.seed = 77;
  compare(spec, makeInputs(spec, 50, 8, true), 9);
}

EMU_CASE("a non-finite input throws cpu::Router's Error(Argument) for the token") {
  RouterSpec spec = baseSpec(8, {4}, 2);
  Inputs in = makeInputs(spec, 5, 9, false);
  in.x[3 * 8 + 2] = NAN;
  const auto message = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const moekit::Error& e) {
      return std::to_string(int(e.kind())) + ": " + e.what();
    }
    return "no error";
  };
  moekit::cpu::Router router(spec);
  const moekit::RouterParams params{in.weight.data(), nullptr, nullptr};
  moekit::Routing routing;
  moekit::cuda::TopKRouting got;
  const std::string want = message([&] { router.forward(in.x.data(), in.T, nullptr, {}, params, routing, true); });
  const std::string cuda = message([&] {
    moekit::cuda::routeTopK(spec, in.x.data(), in.T, in.weight.data(), nullptr, nullptr, nullptr, 0, got);
  });
  EMU_EXPECT(cuda == want, "cuda: " + cuda + " / cpu: " + want);
  emutest::expectContains(cuda, {"token 3"});
}

}  // namespace
