// The router's decision kernels on the SIMT emulator against cpu::Router: cuda::applyCapacity
// (native/cuda/capacity.cu), cuda::selectExpertChoice (expert_choice.cu), and countSelections,
// expertStats, updateLoad, updateBias (router_stats.cu). Each case runs Router::forward (training)
// on random inputs, feeds the kernels what the router ranks by — R6 selection, s, q, cos, computed
// on the host with the core/routing.h calls the router makes, in its order, so they are the
// router's bits — and compares with the Routing it returns: indices, keep, counts and accepted
// exactly, f / load / bias bit for bit, P / maxVio / cv / entropy within 1e-12 relative (see
// kStatsTolerance). A third of the tokens repeat an earlier token, so scores tie across tokens and
// the tie rules of C3 and R9 decide. Built with the emulator's harness (test/emu/harness.h,
// main.cc); run by test/cuda-capacity.test.ts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/capacity.h"
#include "core/errors.h"
#include "core/routing.h"
#include "cpu/router.h"
#include "cuda/block_select.cuh"
#include "cuda/capacity.h"
#include "cuda/expert_choice.h"
#include "cuda/router_stats.h"
#include "harness.h"

namespace {

using moekit::RouterSpec;
using Policy = RouterSpec::Policy;
using emutest::DeviceArray;
namespace cuda = moekit::cuda;
namespace capacity = moekit::capacity;
namespace routing = moekit::routing;

// P, cv and entropy are float64 sums of ≤ 61 (tokens) or ≤ 16 (experts) terms that the kernels add
// in another fixed order than the CPU's loop: each order is within ~n·2⁻⁵³ ≈ 1e-14 of the exact
// sum, so 1e-12 relative leaves a margin of 100 and still catches any wrong term.
constexpr double kStatsTolerance = 1e-12;

int expertCount(const RouterSpec& spec) {
  int E = 0;
  for (int g : spec.groupSizes) E += g;
  return E;
}

std::vector<int> groupStarts(const RouterSpec& spec) {
  std::vector<int> start{0};
  for (int g : spec.groupSizes) start.push_back(start.back() + g);
  return start;
}

RouterSpec baseSpec(int H, std::vector<int> groups, int k) {
  RouterSpec spec;
  spec.hidden = H;
  spec.groupSizes = std::move(groups);
  spec.topK = k;
  return spec;
}

RouterSpec modalitySpec(int k) {  // three groups of 4: any token, modality 0, modality 1
  RouterSpec spec = baseSpec(14, {4, 4, 4}, k);
  spec.groupModality = {-1, 0, 1};
  return spec;
}

struct Inputs {
  int T = 0;
  std::vector<float> x, weight, bias, load;
  std::vector<int32_t> modality;  // empty = none
};

// Tokens [0, distinct) are random; each later token repeats a random earlier one (x and
// modality), so its scores equal that token's. distinct = 0: two thirds of T.
Inputs makeInputs(const RouterSpec& spec, int T, uint32_t seed, bool withModality, int distinct = 0) {
  std::mt19937 rng(seed);
  const auto uniform = [&](float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); };
  const int E = expertCount(spec), H = spec.hidden;
  if (distinct <= 0) distinct = std::max(1, 2 * T / 3);
  Inputs in;
  in.T = T;
  for (int t = 0; t < T; ++t) {
    const int from = t < distinct ? -1 : int(rng() % unsigned(t));
    for (int h = 0; h < H; ++h) in.x.push_back(from < 0 ? uniform(-1, 1) : in.x[size_t(from) * H + h]);
    if (withModality) in.modality.push_back(from < 0 ? int32_t(rng() % 2) : in.modality[size_t(from)]);
  }
  for (int i = 0; i < E * H; ++i) in.weight.push_back(uniform(-1, 1) / std::sqrt(float(H)));
  for (int e = 0; e < E; ++e) in.bias.push_back(uniform(-0.05f, 0.05f));
  for (int e = 0; e < E; ++e) in.load.push_back(uniform(0.01f, 0.3f));
  return in;
}

// What cpu::Router computes before capacity: R2 mask, cosines (R8), s (R3), q (R4/R10, R5) and the
// R6 selection (k = 0: none), with the router's core/routing.h calls in its order. load = router.load
// as the forward reads it, step = its step.
struct Oracle {
  std::vector<uint8_t> allowed;  // empty = every expert allowed
  std::vector<double> cos, s, q;
  std::vector<int32_t> sel;
};

Oracle oracle(const RouterSpec& spec, const Inputs& in, const std::vector<float>& load, uint64_t step,
              int k) {
  const int E = expertCount(spec), H = spec.hidden, T = in.T;
  const bool affinity = spec.type == RouterSpec::Type::Affinity;
  const bool sampled = spec.type == RouterSpec::Type::Sampled;
  Oracle o;
  bool anyModality = false;  // the router ignores the modality when no group carries one
  for (int m : spec.groupModality) anyModality = anyModality || m >= 0;
  if (anyModality && !in.modality.empty()) {
    const std::vector<int> start = groupStarts(spec);
    for (int t = 0; t < T; ++t)
      for (size_t g = 0; g + 1 < start.size(); ++g)
        for (int e = start[g]; e < start[g + 1]; ++e) {
          const int m = spec.groupModality[g];
          o.allowed.push_back(m < 0 || m == in.modality[size_t(t)]);
        }
  }
  std::vector<double> wNorm(static_cast<size_t>(E)), l(size_t(T) * E), load64(load.begin(), load.end());
  std::vector<double> groupScore(size_t(std::max(spec.limitGroups, 1)));
  o.s.assign(size_t(T) * E, 0.0);
  o.q.assign(size_t(T) * E, 0.0);
  o.sel.assign(size_t(T) * k, 0);
  if (affinity) o.cos.assign(size_t(T) * E, 0.0);
  for (int e = 0; e < E; ++e) wNorm[size_t(e)] = routing::rowNorm(&in.weight[size_t(e) * H], H);
  for (int t = 0; t < T; ++t) {
    const float* xt = &in.x[size_t(t) * H];
    const uint8_t* allowed = o.allowed.empty() ? nullptr : &o.allowed[size_t(t) * E];
    double* lt = &l[size_t(t) * E];
    double* st = &o.s[size_t(t) * E];
    double* qt = &o.q[size_t(t) * E];
    if (affinity)
      routing::cosineLogitsRow(xt, in.weight.data(), wNorm.data(), H, E, spec.temperature,
                               &o.cos[size_t(t) * E], lt);
    else
      routing::linearLogitsRow(xt, in.weight.data(), H, E, lt);
    routing::scoresRow(lt, allowed, E, affinity ? routing::ScoreFn::Softmax : spec.score, st);
    if (k == 0) continue;
    if (sampled)
      routing::sampledKeyRow(st, load64.data(), spec.loadPenalty, allowed, E, spec.seed, step, t, qt);
    else
      routing::biasKeyRow(st, spec.useBias ? in.bias.data() : nullptr, allowed, E, qt);
    if (spec.limitGroups > 0)
      routing::limitGroupsRow(qt, E, spec.limitGroups, spec.limitTopGroups, groupScore.data());
    if (routing::topKRow(qt, E, k, &o.sel[size_t(t) * k]) < k)
      throw emutest::Failure("oracle: token " + std::to_string(t) + " has fewer than k finite keys");
  }
  return o;
}

class Stream {
 public:
  Stream() { EMU_CUDA(cudaStreamCreate(&s_)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// "" when equal, else the first difference.
template <class T>
std::string mismatch(const std::string& what, const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size())
    return what + ": size " + std::to_string(got.size()) + ", cpu " + std::to_string(want.size());
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0)
      return what + "[" + std::to_string(i) + "]: cuda " + std::to_string(got[i]) + ", cpu " +
             std::to_string(want[i]);
  return "";
}

std::string mismatchClose(const std::string& what, const std::vector<double>& got,
                          const std::vector<double>& want) {
  if (got.size() != want.size()) return what + ": size differs";
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= kStatsTolerance * std::max(std::fabs(got[i]), std::fabs(want[i]))))
      return what + "[" + std::to_string(i) + "]: cuda " + std::to_string(got[i]) + ", cpu " +
             std::to_string(want[i]);
  return "";
}

void expectEmpty(const std::string& m) { EMU_EXPECT(m.empty(), m); }

// cuda::expertStats on s and want.counts against want's f (bit-equal), P and {maxVio, cv, entropy}.
std::string compareStats(int T, int E, int k, bool sigmoid, const std::vector<double>& s,
                         const moekit::Routing& want, cudaStream_t stream) {
  DeviceArray<double> dS(s), f(static_cast<size_t>(E)), P(static_cast<size_t>(E)), out3(3);
  DeviceArray<int32_t> counts(want.counts);
  cuda::expertStats(T, E, k, sigmoid, dS.get(), counts.get(), f.get(), P.get(), out3.get(), stream);
  EMU_CUDA(cudaStreamSynchronize(stream));
  std::string m = mismatch("f", f.download(), want.f);
  if (m.empty()) m = mismatchClose("P", P.download(), want.P);
  if (m.empty())
    m = mismatchClose("{maxVio, cv, entropy}", out3.download(), {want.maxVio, want.cv, want.entropy});
  return m;
}

// A capacity implementation under test: applyCapacity's signature without the scratch.
using Apply = std::function<void(const cuda::CapacityArgs&, const int32_t* selIdx, const double* s,
                                 const double* q, const double* cos, int32_t* idx, int32_t* keep,
                                 cudaStream_t)>;

Apply realApply(cuda::CapacityScratch& scratch) {
  return [&scratch](const cuda::CapacityArgs& a, const int32_t* selIdx, const double* s, const double* q,
                    const double* cos, int32_t* idx, int32_t* keep, cudaStream_t stream) {
    cuda::applyCapacity(a, selIdx, s, q, cos, idx, keep, scratch, stream);
  };
}

struct Tally {  // what a sweep exercised
  int64_t dropped = 0, moved = 0;
};

// cpu::Router::forward, then `apply` on the router's selection; "" when indices, keep, counts,
// accepted and the stats all equal the router's.
std::string compareCapacity(const RouterSpec& spec, const Inputs& in, const Apply& apply, Tally* tally) {
  const int E = expertCount(spec), k = spec.topK, T = in.T;
  moekit::cpu::Router router(spec);
  std::vector<float> bias = in.bias, load = in.load;
  const Oracle o = oracle(spec, in, load, router.step(), k);
  const moekit::RouterParams params{in.weight.data(), bias.data(), load.data()};
  moekit::Routing want;
  router.forward(in.x.data(), T, in.modality.empty() ? nullptr : in.modality.data(), {}, params, want, true);

  Stream stream;
  DeviceArray<int32_t> sel(o.sel), idx(o.sel), keep(o.sel.size());
  DeviceArray<int32_t> counts(static_cast<size_t>(E)), accepted(static_cast<size_t>(E));
  DeviceArray<double> s(o.s), q(o.q);
  std::unique_ptr<DeviceArray<double>> cos;
  if (!o.cos.empty()) cos = std::make_unique<DeviceArray<double>>(o.cos);
  cuda::CapacityArgs a;
  a.T = T;
  a.E = E;
  a.k = k;
  a.capacity = spec.capacityFactor > 0 ? capacity::perExpert(spec.capacityFactor, T, k, E) : 0;
  a.policy = spec.policy;
  a.minAffinity = spec.minAffinity;
  apply(a, sel.get(), s.get(), q.get(), cos ? cos->get() : nullptr, idx.get(), keep.get(), stream.get());
  cuda::countSelections(T, k, E, sel.get(), nullptr, counts.get(), stream.get());
  cuda::countSelections(T, k, E, idx.get(), keep.get(), accepted.get(), stream.get());
  EMU_CUDA(cudaStreamSynchronize(stream.get()));

  const std::vector<int32_t> gotIdx = idx.download(), gotKeep = keep.download();
  const std::string where = " (T " + std::to_string(T) + ", k " + std::to_string(k) + ", factor " +
                            std::to_string(spec.capacityFactor) + ")";
  const bool sigmoid = spec.score == RouterSpec::Score::Sigmoid && spec.type != RouterSpec::Type::Affinity;
  for (const std::string& m :
       {mismatch("keep", gotKeep, want.keep), mismatch("indices", gotIdx, want.indices),
        mismatch("counts", counts.download(), want.counts),
        mismatch("accepted", accepted.download(), want.accepted),
        compareStats(T, E, k, sigmoid, o.s, want, stream.get())})
    if (!m.empty()) return m + where;
  if (tally)
    for (size_t i = 0; i < gotKeep.size(); ++i) {
      tally->dropped += gotKeep[i] == 0;
      tally->moved += gotIdx[i] != o.sel[i];
    }
  return "";
}

// Capacity factors 0.5 / 1 / 1.25 × k 1 / 2 / 4 × T 1 / 61 (prime) on fresh inputs each.
Tally sweepCapacity(RouterSpec spec, Policy policy, bool withModality, uint32_t seed) {
  cuda::CapacityScratch scratch;  // kept across the sweep: grown on demand, as cuda::Router keeps it
  const Apply apply = realApply(scratch);
  Tally tally;
  spec.policy = policy;
  for (double factor : {0.5, 1.0, 1.25})
    for (int k : {1, 2, 4})
      for (int T : {1, 61}) {
        spec.topK = k;
        spec.capacityFactor = factor;
        expectEmpty(compareCapacity(spec, makeInputs(spec, T, seed++, withModality), apply, &tally));
      }
  EMU_EXPECT(tally.dropped > 0, "no slot was dropped: the sweep does not exercise capacity");
  return tally;
}

EMU_CASE("C2 position equals cpu::Router (E 8, factors 0.5/1/1.25, k 1/2/4, T 1/61)") {
  sweepCapacity(baseSpec(12, {8}, 1), Policy::Position, false, 100);
}

EMU_CASE("C2 position with a modality mask equals cpu::Router (groups -1/0/1)") {
  sweepCapacity(modalitySpec(1), Policy::Position, true, 200);
}

EMU_CASE("C3 score equals cpu::Router, ties to the earlier token (E 8)") {
  sweepCapacity(baseSpec(12, {8}, 1), Policy::Score, false, 300);
}

EMU_CASE("C3 score with a modality mask equals cpu::Router") {
  sweepCapacity(modalitySpec(1), Policy::Score, true, 400);
}

EMU_CASE("C3 score under sigmoid scores with bias equals cpu::Router") {
  RouterSpec spec = baseSpec(12, {8}, 1);
  spec.score = RouterSpec::Score::Sigmoid;
  spec.useBias = true;
  sweepCapacity(spec, Policy::Score, false, 450);
}

EMU_CASE("C5 reroute equals cpu::Router: full choices move down the key order or drop (E 8)") {
  const Tally tally = sweepCapacity(baseSpec(12, {8}, 1), Policy::Reroute, false, 500);
  EMU_EXPECT(tally.moved > 0, "no slot was rerouted");
}

EMU_CASE("C5 reroute with a modality mask equals cpu::Router (moves stay on allowed experts)") {
  const Tally tally = sweepCapacity(modalitySpec(1), Policy::Reroute, true, 600);
  EMU_EXPECT(tally.moved > 0, "no slot was rerouted");
}

EMU_CASE("C5 reroute follows R4/R5 keys (sigmoid + bias, group-limited 4 groups, top 2) as cpu::Router") {
  RouterSpec spec = baseSpec(12, {16}, 1);
  spec.score = RouterSpec::Score::Sigmoid;
  spec.useBias = true;
  spec.limitGroups = 4;
  spec.limitTopGroups = 2;
  const Tally tally = sweepCapacity(spec, Policy::Reroute, false, 700);
  EMU_EXPECT(tally.moved > 0, "no slot was rerouted");
}

EMU_CASE("C5 reroute follows R10 sampled keys as cpu::Router") {
  RouterSpec spec = baseSpec(12, {8}, 1);
  spec.type = RouterSpec::Type::Sampled;
  spec.seed = 0xfeed;
  spec.loadPenalty = 0.5;
  const Tally tally = sweepCapacity(spec, Policy::Reroute, false, 800);
  EMU_EXPECT(tally.moved > 0, "no slot was rerouted");
}

EMU_CASE("C4 minimum affinity, alone and before C2/C3/C5, equals cpu::Router (affinity router)") {
  RouterSpec spec = baseSpec(12, {8}, 1);
  spec.type = RouterSpec::Type::Affinity;
  spec.temperature = 0.5;
  spec.minAffinity = 0.05;
  cuda::CapacityScratch scratch;
  const Apply apply = realApply(scratch);
  uint32_t seed = 900;
  Tally tally;
  for (Policy policy : {Policy::Position, Policy::Score, Policy::Reroute})
    for (double factor : {0.0, 0.5, 1.25})
      for (int k : {1, 2, 4})
        for (int T : {1, 61}) {
          spec.policy = policy;
          spec.capacityFactor = factor;
          spec.topK = k;
          expectEmpty(compareCapacity(spec, makeInputs(spec, T, seed++, false), apply, &tally));
        }
  EMU_EXPECT(tally.dropped > 0 && tally.moved > 0, "nothing dropped or nothing rerouted");
}

EMU_CASE("C4 with a modality mask and reroute equals cpu::Router") {
  RouterSpec spec = modalitySpec(2);
  spec.type = RouterSpec::Type::Affinity;
  spec.temperature = 0.4;
  spec.minAffinity = 0.0;
  sweepCapacity(spec, Policy::Reroute, true, 1000);
}

// ---- a deliberately broken C3 -------------------------------------------------------------------

// C3 with the tie rule reversed (ties → LATER slot: lo = slot instead of ~slot), one block per
// expert over all slots. Compiled only into this test, to show that the comparison catches it.
__global__ void tieReversedKeepBestKernel(int slots, int k, int E, int64_t C, const double* s,
                                          const int32_t* idx, int32_t* keep) {
  const int e = int(blockIdx.x);
  const auto keyOf = [&](int a, capacity::RankKey& key) {
    if (idx[a] != e || !keep[a]) return false;
    key = capacity::RankKey{capacity::rankKey(s[int64_t(a / k) * E + e], a).hi, uint32_t(a)};
    return true;
  };
  int n = 0;
  for (int a0 = 0; a0 < slots; a0 += int(blockDim.x)) {
    const int a = a0 + int(threadIdx.x);
    n += __syncthreads_count(a < slots && idx[a] == e && keep[a]);
  }
  if (n <= C) return;
  const capacity::RankKey cut = cuda::selectKth(slots, C, 0, keyOf);
  for (int a = int(threadIdx.x); a < slots; a += int(blockDim.x)) {
    capacity::RankKey key;
    if (keyOf(a, key) && !capacity::atLeast(key, cut)) keep[a] = 0;
  }
}

void tieReversedApply(const cuda::CapacityArgs& a, const int32_t*, const double* s, const double*,
                      const double*, int32_t* idx, int32_t* keep, cudaStream_t stream) {
  const std::vector<int32_t> ones(size_t(a.T) * a.k, 1);
  EMU_CUDA(cudaMemcpy(keep, ones.data(), ones.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  EMU_CUDA(moekit::launch<tieReversedKeepBestKernel>(dim3(unsigned(a.E)), dim3(256), 0, stream,
                                                     a.T * a.k, a.k, a.E, a.capacity, s, idx, keep));
}

EMU_CASE("a C3 kernel that reverses the tie rule fails the comparison (all tokens tie)") {
  RouterSpec spec = baseSpec(10, {8}, 2);
  spec.policy = Policy::Score;
  spec.capacityFactor = 0.5;
  const Inputs in = makeInputs(spec, 24, 1100, false, 1);  // 24 copies of one token
  cuda::CapacityScratch scratch;
  expectEmpty(compareCapacity(spec, in, realApply(scratch), nullptr));
  const std::string broken = compareCapacity(spec, in, tieReversedApply, nullptr);
  EMU_EXPECT(!broken.empty(),
             "the tie-reversed kernel matched cpu::Router: the comparison misses the tie rule");
  emutest::expectContains(broken, {"keep["});
}

// ---- R9 expert choice ---------------------------------------------------------------------------

// cpu::Router (type ExpertChoice) against selectExpertChoice; "" when the assignments, counts and
// stats equal. takenBelowC: set when some expert took fewer than C tokens.
std::string compareExpertChoice(const RouterSpec& spec, const Inputs& in, cuda::ExpertChoiceScratch& scratch,
                                bool* takenBelowC) {
  const int E = expertCount(spec), T = in.T;
  moekit::cpu::Router router(spec);
  const Oracle o = oracle(spec, in, in.load, 0, 0);
  const moekit::RouterParams params{in.weight.data(), nullptr, nullptr};
  moekit::Routing want;
  router.forward(in.x.data(), T, in.modality.empty() ? nullptr : in.modality.data(), {}, params, want, true);

  const double factor = spec.capacityFactor > 0 ? spec.capacityFactor : 1.0;
  const int64_t C = std::min<int64_t>(capacity::perExpert(factor, T, spec.topK, E), T);
  Stream stream;
  DeviceArray<double> s(o.s);
  std::unique_ptr<DeviceArray<uint8_t>> allowed;
  if (!o.allowed.empty()) allowed = std::make_unique<DeviceArray<uint8_t>>(o.allowed);
  DeviceArray<int32_t> counts(static_cast<size_t>(E));
  DeviceArray<int32_t> token(static_cast<size_t>(E * C)), expert(static_cast<size_t>(E * C));
  const int64_t total =
      cuda::selectExpertChoice(T, E, C, s.get(), allowed ? allowed->get() : nullptr, counts.get(),
                               token.get(), expert.get(), scratch, stream.get());
  std::vector<int32_t> gotToken = token.download(), gotExpert = expert.download();
  gotToken.resize(size_t(total));
  gotExpert.resize(size_t(total));
  const std::vector<int32_t> gotCounts = counts.download();
  for (int32_t c : gotCounts) *takenBelowC = *takenBelowC || c < C;
  const std::string where = " (T " + std::to_string(T) + ", C " + std::to_string(C) + ")";
  for (const std::string& m :
       {mismatch("assignToken", gotToken, want.assignToken),
        mismatch("assignExpert", gotExpert, want.assignExpert),
        mismatch("counts", gotCounts, want.counts),
        compareStats(T, E, spec.topK, spec.score == RouterSpec::Score::Sigmoid, o.s, want, stream.get())})
    if (!m.empty()) return m + where;
  return "";
}

EMU_CASE("R9 expert choice equals cpu::Router (factors 0→1 / 0.5 / 1.25, topK 1/2, T 1/61)") {
  RouterSpec spec = baseSpec(12, {8}, 1);
  spec.type = RouterSpec::Type::ExpertChoice;
  cuda::ExpertChoiceScratch scratch;
  bool below = false;
  uint32_t seed = 1200;
  for (double factor : {0.0, 0.5, 1.25})
    for (int k : {1, 2})
      for (int T : {1, 61}) {
        spec.capacityFactor = factor;
        spec.topK = k;
        expectEmpty(compareExpertChoice(spec, makeInputs(spec, T, seed++, false), scratch, &below));
      }
}

EMU_CASE("R9 expert choice with a modality mask, C above the allowed tokens, equals cpu::Router") {
  RouterSpec spec = modalitySpec(2);
  spec.type = RouterSpec::Type::ExpertChoice;
  cuda::ExpertChoiceScratch scratch;
  bool below = false;
  uint32_t seed = 1300;
  for (double factor : {0.0, 4.0})
    for (int T : {1, 61, 300}) {
      spec.capacityFactor = factor;
      expectEmpty(compareExpertChoice(spec, makeInputs(spec, T, seed++, true), scratch, &below));
    }
  EMU_EXPECT(below, "every expert took C tokens: C never exceeded the allowed tokens");
}

// ---- ExpertStats, R10 load, B1 bias ------------------------------------------------------------

EMU_CASE("ExpertStats of sigmoid scores with a modality mask equal cpu::Router") {
  RouterSpec spec = modalitySpec(2);
  spec.score = RouterSpec::Score::Sigmoid;
  for (int T : {1, 61}) {
    const Inputs in = makeInputs(spec, T, 1400 + uint32_t(T), true);
    cuda::CapacityScratch scratch;
    expectEmpty(compareCapacity(spec, in, realApply(scratch), nullptr));  // includes compareStats
  }
}

EMU_CASE("R10 load update is bit-equal to cpu::Router over three forwards (sampled, decay 0.3)") {
  RouterSpec spec = baseSpec(12, {8}, 2);
  spec.type = RouterSpec::Type::Sampled;
  spec.loadDecay = 0.3;
  spec.seed = 99;
  const int E = expertCount(spec);
  moekit::cpu::Router router(spec);
  const Inputs first = makeInputs(spec, 61, 1500, false);
  std::vector<float> load = first.load;  // updated in place by the router
  DeviceArray<float> dLoad(load);
  Stream stream;
  for (int step = 0; step < 3; ++step) {
    const Inputs in = makeInputs(spec, 61 - 10 * step, 1500 + uint32_t(step), false);
    const std::vector<float> before = load;
    const Oracle o = oracle(spec, in, load, router.step(), 0);
    moekit::Routing want;
    const moekit::RouterParams params{in.weight.data(), nullptr, load.data()};
    router.forward(in.x.data(), in.T, nullptr, {}, params, want, true);
    DeviceArray<double> s(o.s), f(static_cast<size_t>(E)), P(static_cast<size_t>(E)), out3(3);
    DeviceArray<int32_t> counts(want.counts);
    cuda::expertStats(in.T, E, spec.topK, false, s.get(), counts.get(), f.get(), P.get(), out3.get(),
                      stream.get());
    cuda::updateLoad(E, spec.loadDecay, f.get(), dLoad.get(), stream.get());
    EMU_CUDA(cudaStreamSynchronize(stream.get()));
    expectEmpty(mismatch("load (step " + std::to_string(step) + ")", dLoad.download(), load));
    EMU_EXPECT(load != before, "the load did not change");
  }
}

// cpu::Router::endStep after one forward per entry of `tokens` (the window sums their counts)
// against updateBias on the summed counts; returns the bias before and after (bit-equal on both).
struct BiasChange {
  std::vector<float> before, after;
};

BiasChange compareBias(const RouterSpec& spec, const std::vector<int>& tokens, uint32_t seed) {
  const int E = expertCount(spec);
  moekit::cpu::Router router(spec);
  BiasChange change;
  change.before = makeInputs(spec, 1, seed, false).bias;
  std::vector<float> bias = change.before;
  std::vector<int64_t> window(static_cast<size_t>(E), 0);
  for (int T : tokens) {
    const Inputs in = makeInputs(spec, T, ++seed, false);
    moekit::Routing want;
    router.forward(in.x.data(), T, nullptr, {}, moekit::RouterParams{in.weight.data(), bias.data(), nullptr},
                   want, true);
    for (int e = 0; e < E; ++e) window[size_t(e)] += want.counts[size_t(e)];
  }
  EMU_EXPECT(bias == change.before, "forward changed the bias");
  DeviceArray<float> dBias(bias);
  DeviceArray<int64_t> dWindow(window);
  Stream stream;
  cuda::updateBias(groupStarts(spec), spec.biasUpdateRate, dWindow.get(), dBias.get(), stream.get());
  router.endStep(bias.data());
  EMU_CUDA(cudaStreamSynchronize(stream.get()));
  expectEmpty(mismatch("bias", dBias.download(), bias));
  change.after = bias;
  return change;
}

EMU_CASE("B1 bias update equals cpu::Router::endStep (groups 1/4/3, two forwards in the window)") {
  RouterSpec spec = baseSpec(12, {1, 4, 3}, 2);
  spec.useBias = true;
  spec.biasUpdateRate = 0.01;
  const BiasChange change = compareBias(spec, {61, 17}, 1600);
  EMU_EXPECT(change.after != change.before, "no bias moved");
  EMU_EXPECT(change.after[0] == change.before[0], "a group of one expert is at its mean: its bias must stay");
}

EMU_CASE("B1 leaves every bias when each expert is at its group's mean (sign 0), as cpu::Router") {
  RouterSpec spec = baseSpec(12, {3}, 3);  // top-3 of 3 experts: equal counts
  spec.useBias = true;
  spec.biasUpdateRate = 0.25;
  const BiasChange change = compareBias(spec, {31}, 1700);
  EMU_EXPECT(change.after == change.before, "a bias moved although every count equals the mean");
}

// ---- host pieces and argument checks -----------------------------------------------------------

EMU_CASE("capacity::rankKey orders exactly as capacity::ranksHigher (ties, ±0, negatives)") {
  const double scores[] = {-2.5, -1e-300, -0.0, 0.0, 1e-300, 0.25, 0.25, 0.5, 1.0, 3e300};
  const int32_t ids[] = {0, 1, 2, 7, 1000, 2147483647};
  for (double sa : scores)
    for (int32_t a : ids)
      for (double sb : scores)
        for (int32_t b : ids) {
          const capacity::RankKey ka = capacity::rankKey(sa, a), kb = capacity::rankKey(sb, b);
          const bool above = capacity::atLeast(ka, kb) && !(ka.hi == kb.hi && ka.lo == kb.lo);
          EMU_EXPECT(above == capacity::ranksHigher(sa, a, sb, b),
                     "rankKey(" + std::to_string(sa) + ", " + std::to_string(a) + ") vs (" +
                         std::to_string(sb) + ", " + std::to_string(b) + ")");
        }
}

// "<kind>: <message>" of the moekit::Error that call throws; "no error" when none.
template <class F>
std::string errorOf(F&& call) {
  try {
    call();
  } catch (const moekit::Error& e) {
    const bool shape = e.kind() == moekit::ErrorKind::Shape;
    const bool argument = e.kind() == moekit::ErrorKind::Argument;
    return std::string(shape ? "Shape: " : argument ? "Argument: " : "other kind: ") + e.what();
  }
  return "no error";
}

EMU_CASE("launchers reject bad arguments with Error naming the argument") {
  using emutest::expectContains;
  cuda::CapacityScratch cs;
  cuda::ExpertChoiceScratch es;
  DeviceArray<int32_t> ints(64);
  DeviceArray<double> doubles(64);
  DeviceArray<float> floats(8);
  DeviceArray<int64_t> longs(8);
  int32_t* i = ints.get();
  double* d = doubles.get();
  cuda::CapacityArgs a;
  a.T = 4;
  a.E = 8;
  const auto capacityError = [&](const double* s, const double* q) {
    return errorOf([&] { cuda::applyCapacity(a, i, s, q, nullptr, i, i, cs, nullptr); });
  };
  a.k = 9;
  expectContains(capacityError(d, d), {"Shape: ", "k: expected an integer in [1, 8], got 9"});
  a.k = 2;
  a.capacity = -1;
  expectContains(capacityError(d, d), {"Argument: ", "capacity: expected a non-negative count"});
  a.capacity = 3;
  a.policy = Policy::Score;
  expectContains(capacityError(nullptr, d), {"Argument: ", "s: expected a [T,E] f64 device buffer"});
  a.policy = Policy::Reroute;
  expectContains(capacityError(d, nullptr), {"Argument: ", "q: expected a [T,E] f64 device buffer"});
  expectContains(errorOf([&] { cuda::selectExpertChoice(4, 8, -1, d, nullptr, i, i, i, es, nullptr); }),
                 {"Argument: ", "C: expected a non-negative capacity, got -1"});
  expectContains(errorOf([&] { cuda::selectExpertChoice(4, 8, 2, d, nullptr, i, nullptr, i, es, nullptr); }),
                 {"Argument: ", "token: expected"});
  expectContains(errorOf([&] { cuda::countSelections(-1, 2, 8, i, nullptr, i, nullptr); }),
                 {"Shape: ", "T: expected a non-negative token count, got -1"});
  expectContains(errorOf([&] { cuda::expertStats(4, 8, 2, false, d, i, d, nullptr, d, nullptr); }),
                 {"Argument: ", "P: expected an [E] f64 device buffer"});
  expectContains(errorOf([&] { cuda::updateLoad(8, 1.5, d, floats.get(), nullptr); }),
                 {"Argument: ", "decay: expected a number in [0, 1]"});
  expectContains(errorOf([&] { cuda::updateBias({0, 4, 4}, 0.1, longs.get(), floats.get(), nullptr); }),
                 {"Argument: ", "groupStart[2]: expected more than groupStart[1] = 4, got 4"});
}

}  // namespace
