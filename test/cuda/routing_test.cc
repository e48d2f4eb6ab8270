// The top-k routing launchers of native/cuda/routing.h (run on the SIMT emulator), composed as
// cuda::Router composes them for the decisions (routeOnDevice below: R1/R8 logits, R3–R6
// selectExperts, R7 weights), against cpu::Router's decisions: Router::forward(training = true) on
// the same inputs, then indices equal and weights
// bit-equal (both run core/routing.h in float64 and round once to f32). The scores s are compared
// bit for bit with core/routing.h run on the host (the router keeps them private). No tolerance:
// the warp kernels compute every value with the CPU's expressions and add every sum in the CPU's
// order. Expert counts that are not multiples of 32 (partly filled lanes), more groups than lanes
// and exact key ties across lanes pin the warp reductions; a deliberately broken warp top-k
// (brokenTopKKernel, compiled only here) must be caught by the same comparison. Built with the
// emulator's harness (test/emu/harness.h, main.cc); run by test/cuda-routing.test.ts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/routing.h"
#include "cpu/router.h"
#include "cuda/cuda_check.h"
#include "cuda/routing.h"
#include "emu/launch.h"
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

// One forward's top-k decisions on the device: indices [T,k], weights [T,k], scores s [T,E].
struct Decisions {
  std::vector<int32_t> indices;
  std::vector<float> weights;
  std::vector<double> scores;
};

// The launchers composed as cuda::Router::computeScores / selectTopK run them (without capacity),
// on device copies of `in` at R10 step `step`; `replaceTopK`, when given, overwrites the R6
// indices from the keys q before R7 (the broken top-k cases). Throws cpu::Router's Error(Argument)
// when a token has fewer than k finite keys (checkFound).
template <class ReplaceTopK>
Decisions routeOnDevice(const RouterSpec& spec, const Inputs& in, uint64_t step, ReplaceTopK replaceTopK) {
  namespace cu = moekit::cuda;
  const int E = expertCount(spec), H = spec.hidden, T = in.T, k = spec.topK;
  const bool sampled = spec.type == RouterSpec::Type::Sampled, affinity = spec.type == RouterSpec::Type::Affinity;
  const size_t tE = size_t(T) * E, tk = size_t(T) * k;
  const std::vector<uint8_t> allowed = allowedMask(spec, in);
  const cu::SelectArgs a = cu::selectArgsOf(spec, T, E, step);
  emutest::DeviceArray<float> x(in.x), weight(in.weight), bias(in.bias), weights(tk);
  emutest::DeviceArray<double> load(std::vector<double>(in.load.begin(), in.load.end()));  // R10 reads ℓ in float64
  emutest::DeviceArray<double> norms{size_t(E)}, logits(tE), s(tE), q(tE), wScratch(tk);
  emutest::DeviceArray<double> groupScore(size_t(T) * std::max(a.limitGroups, 1));
  emutest::DeviceArray<uint8_t> mask(allowed.empty() ? std::vector<uint8_t>(1) : allowed);
  emutest::DeviceArray<int32_t> idx(tk), found(static_cast<size_t>(T));
  emutest::DeviceArray<unsigned long long> shortToken(1);
  if (affinity) cu::expertNorms(weight.get(), E, H, norms.get(), nullptr);
  cu::routerLogits(x.get(), weight.get(), affinity ? norms.get() : nullptr, T, E, H, spec.temperature, nullptr,
                   logits.get(), nullptr);
  cu::selectExperts(a, logits.get(), allowed.empty() ? nullptr : mask.get(),
                    spec.useBias && !sampled ? bias.get() : nullptr, sampled ? load.get() : nullptr, s.get(), q.get(),
                    a.limitGroups > 0 ? groupScore.get() : nullptr, idx.get(), found.get(), nullptr);
  replaceTopK(q.get(), idx.get());
  cu::routingWeights(T, E, k, spec.normalize, spec.scale, s.get(), idx.get(), wScratch.get(), weights.get(), nullptr);
  cu::findShortToken(found.get(), T, k, shortToken.get(), nullptr);
  EMU_CUDA(cudaDeviceSynchronize());
  cu::checkFound(shortToken.download()[0], k);
  return Decisions{idx.download(), weights.download(), s.download()};
}

Decisions routeOnDevice(const RouterSpec& spec, const Inputs& in, uint64_t step) {
  return routeOnDevice(spec, in, step, [](const double*, int32_t*) {});
}

// The first difference of `got` from cpu::Router's decisions on the same inputs ("" = none):
// indices equal, weights and scores bit-equal.
std::string differenceFromCpu(const RouterSpec& spec, const Inputs& in, uint64_t step,
                              const Decisions& got) {
  moekit::cpu::Router router(spec);
  router.setStep(step);
  std::vector<float> bias = in.bias, load = in.load;  // the router may update them
  const moekit::RouterParams params{in.weight.data(), bias.data(), load.data()};
  moekit::Routing want;
  router.forward(in.x.data(), in.T, in.modality.empty() ? nullptr : in.modality.data(), {}, params, want, true);

  if (want.indices.size() != got.indices.size()) return "indices size";
  for (size_t i = 0; i < got.indices.size(); ++i)
    if (got.indices[i] != want.indices[i])
      return "indices[" + std::to_string(i) + "]: cuda " + std::to_string(got.indices[i]) + ", cpu " +
             std::to_string(want.indices[i]);
  if (want.weights.size() != got.weights.size()) return "weights size";
  for (size_t i = 0; i < got.weights.size(); ++i)
    if (std::memcmp(&got.weights[i], &want.weights[i], sizeof(float)) != 0)
      return "weights[" + std::to_string(i) + "]: cuda " + std::to_string(got.weights[i]) + ", cpu " +
             std::to_string(want.weights[i]);
  const std::vector<double> s = hostScores(spec, in, allowedMask(spec, in));
  if (got.scores.size() != s.size()) return "scores size";
  if (std::memcmp(got.scores.data(), s.data(), s.size() * sizeof(double)) != 0) return "scores differ in bits";
  return "";
}

void compare(const RouterSpec& spec, const Inputs& in, uint64_t step) {
  const Decisions got = routeOnDevice(spec, in, step);
  const std::string difference = differenceFromCpu(spec, in, step, got);
  EMU_EXPECT(difference.empty(), difference);
  // The case must exercise something: not every token picks the same experts (with one expert
  // there is nothing else to pick).
  bool varied = expertCount(spec) == 1;
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

// ---- expert counts and group layouts against the warp (32 lanes) --------------------------------

EMU_CASE("softmax top-2 over 5 experts (lanes 5..31 idle) equals cpu::Router (T 3, a partial block)") {
  RouterSpec spec = baseSpec(12, {5}, 2);
  compare(spec, makeInputs(spec, 3, 10, false), 0);
}

EMU_CASE("sigmoid + bias normalized top-3 over 33 experts (lane 0 owns two) equals cpu::Router") {
  RouterSpec spec = baseSpec(18, {33}, 3);
  spec.score = RouterSpec::Score::Sigmoid;
  spec.useBias = true;
  spec.normalize = true;
  compare(spec, makeInputs(spec, 40, 11, false), 0);
}

EMU_CASE("softmax normalized top-6 with scale over 70 experts (three per lane) equals cpu::Router") {
  RouterSpec spec = baseSpec(25, {70}, 6);
  spec.normalize = true;
  spec.scale = 1.5;
  compare(spec, makeInputs(spec, 45, 12, false), 0);
}

EMU_CASE("a single expert (E 1, k 1) equals cpu::Router") {
  RouterSpec spec = baseSpec(9, {1}, 1);
  spec.normalize = true;
  compare(spec, makeInputs(spec, 17, 13, false), 0);
}

EMU_CASE("k = E = 33: normalized softmax over every expert (slot 32 on lane 0) equals cpu::Router") {
  RouterSpec spec = baseSpec(14, {33}, 33);
  spec.normalize = true;
  spec.scale = 0.5;
  compare(spec, makeInputs(spec, 21, 14, false), 0);
}

EMU_CASE("k = E = 5 with sigmoid scores equals cpu::Router") {
  RouterSpec spec = baseSpec(10, {5}, 5);
  spec.score = RouterSpec::Score::Sigmoid;
  compare(spec, makeInputs(spec, 19, 15, false), 0);
}

EMU_CASE("72 experts with modality masks (-1/0/1), sigmoid + bias group-limited top-4 (6 groups, top 3) equals cpu::Router") {
  RouterSpec spec = baseSpec(20, {24, 24, 24}, 4);
  spec.groupModality = {-1, 0, 1};
  spec.score = RouterSpec::Score::Sigmoid;
  spec.useBias = true;
  spec.limitGroups = 6;
  spec.limitTopGroups = 3;
  spec.normalize = true;
  compare(spec, makeInputs(spec, 50, 16, true), 0);
}

EMU_CASE("64 experts with modality masks (-1/0), softmax + bias group-limited top-8 (8 groups, top 4) equals cpu::Router") {
  RouterSpec spec = baseSpec(16, {32, 32}, 8);
  spec.groupModality = {-1, 0};
  spec.useBias = true;
  spec.limitGroups = 8;
  spec.limitTopGroups = 4;
  compare(spec, makeInputs(spec, 40, 17, true), 0);
}

EMU_CASE("40 groups of one expert (more groups than lanes), sigmoid + bias group-limited top-3 equals cpu::Router") {
  RouterSpec spec = baseSpec(16, {40}, 3);
  spec.score = RouterSpec::Score::Sigmoid;
  spec.useBias = true;
  spec.limitGroups = 40;
  spec.limitTopGroups = 10;
  compare(spec, makeInputs(spec, 33, 18, false), 0);
}

EMU_CASE("256 experts, sigmoid + bias group-limited normalized top-8 with scale (8 groups, top 4) equals cpu::Router") {
  RouterSpec spec = baseSpec(16, {256}, 8);
  spec.score = RouterSpec::Score::Sigmoid;
  spec.useBias = true;
  spec.limitGroups = 8;
  spec.limitTopGroups = 4;
  spec.normalize = true;
  spec.scale = 2.5;
  compare(spec, makeInputs(spec, 20, 19, false), 0);
}

EMU_CASE("sampled (seed, step 5, load penalty 1.3) top-3 over 40 experts equals cpu::Router") {
  RouterSpec spec = baseSpec(16, {40}, 3);
  spec.type = RouterSpec::Type::Sampled;
  spec.seed = 0xfeedbeef12ULL;
  spec.loadPenalty = 1.3;
  compare(spec, makeInputs(spec, 48, 20, false), 5);
}

EMU_CASE("sampled normalized top-2 over 40 experts with modality masks (0/-1, step 2) equals cpu::Router") {
  RouterSpec spec = baseSpec(16, {20, 20}, 2);
  spec.groupModality = {0, -1};
  spec.type = RouterSpec::Type::Sampled;
  spec.seed = 4242;
  spec.normalize = true;
  compare(spec, makeInputs(spec, 48, 21, true), 2);
}

// ---- exact ties across lanes, and a broken warp top-k the comparison must catch ------------------

// 48 experts whose router rows 32 + i copy rows 8 + i (i < 16): experts 8 + i (lane 8 + i) and
// 32 + i (lane i) get identical logits, scores and keys (no bias), so R6 meets exact ties between
// lanes with the lower index on the higher lane.
RouterSpec tiedSpec() {
  RouterSpec spec = baseSpec(16, {48}, 4);
  spec.normalize = true;
  return spec;
}

Inputs tiedInputs(const RouterSpec& spec, int T, uint32_t seed) {
  Inputs in = makeInputs(spec, T, seed, false);
  const int H = spec.hidden;
  for (int i = 0; i < 16; ++i)
    std::copy_n(&in.weight[size_t(8 + i) * H], H, &in.weight[size_t(32 + i) * H]);
  return in;
}

EMU_CASE("exact key ties across lanes go to the lower expert index, as cpu::Router (E 48, duplicated rows)") {
  const RouterSpec spec = tiedSpec();
  const Inputs in = tiedInputs(spec, 60, 22);
  compare(spec, in, 0);
  const Decisions got = routeOnDevice(spec, in, 0);
  // The case must meet ties: some token selects both experts of a duplicated pair.
  int tiedTokens = 0;
  for (int t = 0; t < in.T; ++t) {
    const int32_t* row = &got.indices[size_t(t) * spec.topK];
    bool tied = false;
    for (int a = 0; a < spec.topK; ++a)
      for (int b = 0; b < spec.topK; ++b) tied = tied || (row[a] >= 8 && row[a] < 24 && row[b] == row[a] + 24);
    tiedTokens += tied;
  }
  EMU_EXPECT(tiedTokens > 0, "no token selected both experts of a tied pair: the case meets no tie");
}

// The defects the broken warp top-k can carry.
enum class Defect {
  HalfWarpShuffle,    // shuffles of width 16: lane 0 never sees the experts of lanes 16..31
  TiesToHigherIndex,  // the cross-lane combine breaks key ties toward the higher expert index
};

// A deliberately broken copy of the R6 warp top-k of routing.cu (one warp per token, k rounds of a
// lane scan and an xor butterfly), compiled only into this test: the comparison must report it.
template <Defect kDefect>
__global__ void brokenTopKKernel(const double* q, int T, int E, int k, int32_t* idx) {
  namespace r = moekit::routing;
  const int t = int(blockIdx.x) * 8 + int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  if (t >= T) return;
  const double* qt = q + int64_t(t) * E;
  double prevKey = 0;
  int prev = -1;
  for (int j = 0; j < k; ++j) {
    double key = 0;
    int best = -1;
    for (int e = lane; e < E; e += 32)
      if (r::followsInKeyOrder(qt[e], e, prevKey, prev) && r::beatsBest(qt[e], e, key, best)) {
        key = qt[e];
        best = e;
      }
    const int width = kDefect == Defect::HalfWarpShuffle ? 16 : 32;
    for (int offset = 16; offset > 0; offset /= 2) {
      const double otherKey = __shfl_xor_sync(0xffffffffu, key, offset, width);
      const int other = __shfl_xor_sync(0xffffffffu, best, offset, width);
      const bool better = kDefect == Defect::TiesToHigherIndex
                              ? other >= 0 && (best < 0 || otherKey > key || (otherKey == key && other > best))
                              : other >= 0 && r::beatsBest(otherKey, other, key, best);
      if (better) {
        key = otherKey;
        best = other;
      }
    }
    if (lane == 0) idx[int64_t(t) * k + j] = best;
    prev = best;
    prevKey = key;
  }
}

// routeOnDevice with the shipped R6 replaced by brokenTopKKernel over the keys q. For specs with
// softmax scores and no bias, group limit or mask, where every key is finite.
template <Defect kDefect>
Decisions routeWithBrokenTopK(const RouterSpec& spec, const Inputs& in) {
  EMU_EXPECT(spec.type == RouterSpec::Type::TopK && spec.score == RouterSpec::Score::Softmax &&
                 !spec.useBias && spec.limitGroups == 0 && in.modality.empty(),
             "routeWithBrokenTopK takes plain softmax top-k specs");
  const int E = expertCount(spec), T = in.T, k = spec.topK;
  return routeOnDevice(spec, in, 0, [&](const double* q, int32_t* idx) {
    EMU_CUDA(moekit::launch<brokenTopKKernel<kDefect>>(dim3((T + 7) / 8), dim3(256), 0, nullptr, q, T, E, k, idx));
  });
}

EMU_CASE("a warp top-k whose shuffles span half a warp differs from cpu::Router (the comparison can fail)") {
  const RouterSpec spec = tiedSpec();
  const Inputs in = makeInputs(spec, 40, 23, false);
  compare(spec, in, 0);  // the shipped kernels pass on these inputs
  const std::string difference = differenceFromCpu(spec, in, 0, routeWithBrokenTopK<Defect::HalfWarpShuffle>(spec, in));
  std::fprintf(stderr, "half-warp shuffle: %s\n", difference.c_str());
  EMU_EXPECT(!difference.empty(), "the comparison did not catch half-warp shuffles");
  emutest::expectContains(difference, {"indices["});
}

EMU_CASE("a warp top-k that breaks ties toward the higher index differs from cpu::Router (the comparison can fail)") {
  const RouterSpec spec = tiedSpec();
  const Inputs in = tiedInputs(spec, 60, 22);
  const std::string difference = differenceFromCpu(spec, in, 0, routeWithBrokenTopK<Defect::TiesToHigherIndex>(spec, in));
  std::fprintf(stderr, "ties to the higher index: %s\n", difference.c_str());
  EMU_EXPECT(!difference.empty(), "the comparison did not catch the broken tie rule");
  emutest::expectContains(difference, {"indices["});
}

}  // namespace
