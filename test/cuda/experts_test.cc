// cuda::Experts (native/cuda, run on the SIMT emulator) against its reference cpu::Experts, and the
// device permutation against cpu::planPermutation. Built with the emulator's harness
// (test/emu/harness.h, main.cc): `--list`, `--run NAME`, PASS/FAIL; run by test/cuda-experts.test.ts.
//
// cuda::Experts reads and writes device memory (x, y, dy, dx, weights, gradients): the cases drive
// it through OnDevice, which keeps device copies of a problem's host buffers, so one host-side
// harness runs both stages.
//
// Two kinds of data:
//   integer  small integers (and routing weights in quarters) chosen so that every sum, product
//            and activation is exact in fp32: results must equal the CPU's bit for bit, whatever
//            the order of the sums. For gelu and swiglu the pre-activations a1 are pushed far from
//            0 (x has a constant column 1, w1 puts +32 or −128 on it, the rest is in {−1, 0, 1}
//            with H ≤ 16) where σ(a1) is exactly 0 or 1, erf(a1/√2) exactly ±1 and the
//            derivatives exactly 0 or 1, so h and da1, da3 are integers too.
//   random   uniform floats: ‖cuda − cpu‖₂ / ‖cpu‖₂ ≤ 1e-5 per tensor. Both sum in fp32 in
//            different orders (CPU: blocked AVX2 sgemm; device: one fmaf chain per element) over at
//            most ~100 terms: ~1e-7 each; 1e-5 leaves room for the forward/backward chain without
//            hiding a wrong index (off by ≥ 1e-2).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <utility>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cpu/dispatch.h"
#include "cpu/experts.h"
#include "cuda/experts.h"
#include "cuda/permute.h"
#include "harness.h"

namespace {

using moekit::Activation;
using moekit::ExpertGroup;

constexpr double kRandomTolerance = 1e-5;
constexpr int kTile = 64;  // the GEMM tile of native/cuda/grouped_gemm.cu

enum class Data { Integer, Random };

struct GroupSpec {
  int count, ffn;
};

struct Problem {
  int H = 0, T = 0;
  Activation act = Activation::Relu;
  std::vector<GroupSpec> groups;
  std::vector<int32_t> token, expert;
  std::vector<float> weight, x, y, dy, dx;           // y, dx: the values added to
  std::vector<std::vector<float>> w1, w3, w2, g1, g3, g2;  // per group; g*: initial accumulators
  int n() const { return int(token.size()); }
};

struct Result {
  std::vector<float> y, dx, dWeight;
  std::vector<std::vector<float>> g1, g3, g2;
  std::vector<int64_t> flops;
  double forwardMs = 0, backwardMs = 0;
};

const char* name(Activation act) {
  return act == Activation::Swiglu ? "swiglu" : act == Activation::Gelu ? "gelu" : "relu";
}

// counts[e] rows for global expert e, on distinct tokens where T allows; the assignment list is
// shuffled so the plan's (expert, token, assignment) order is really exercised.
Problem makeProblem(Activation act, int H, int T, std::vector<GroupSpec> groups,
                    const std::vector<int>& counts, Data data, uint32_t seed) {
  std::mt19937 rng(seed);
  Problem p;
  p.H = H;
  p.T = T;
  p.act = act;
  p.groups = std::move(groups);
  const auto uniform = [&](float scale) {
    return std::uniform_real_distribution<float>(-scale, scale)(rng);
  };
  const auto small = [&](int bound) { return float(std::uniform_int_distribution<int>(-bound, bound)(rng)); };
  const bool pushed = data == Data::Integer && act != Activation::Relu;
  const auto fill = [&](std::vector<float>& v, size_t size, float scale, int bound) {
    v.resize(size);
    for (float& e : v) e = data == Data::Random ? uniform(scale) : small(bound);
  };

  std::vector<int> tokens(static_cast<size_t>(T));
  std::iota(tokens.begin(), tokens.end(), 0);
  struct Assignment {
    int32_t token, expert;
    float weight;
  };
  std::vector<Assignment> list;
  for (size_t e = 0; e < counts.size(); ++e) {
    std::shuffle(tokens.begin(), tokens.end(), rng);
    for (int i = 0; i < counts[e]; ++i) {
      const float w = data == Data::Random ? std::uniform_real_distribution<float>(0.0f, 1.0f)(rng)
                                           : 0.25f * float(std::uniform_int_distribution<int>(1, 4)(rng));
      list.push_back({tokens[size_t(i % T)], int32_t(e), w});
    }
  }
  std::shuffle(list.begin(), list.end(), rng);
  for (const Assignment& a : list) {
    p.token.push_back(a.token);
    p.expert.push_back(a.expert);
    p.weight.push_back(a.weight);
  }

  fill(p.x, size_t(T) * H, 1.0f, 1);
  if (pushed)
    for (int t = 0; t < T; ++t) p.x[size_t(t) * H] = 1.0f;
  fill(p.y, size_t(T) * H, 1.0f, 3);
  fill(p.dy, size_t(T) * H, 1.0f, 2);
  fill(p.dx, size_t(T) * H, 1.0f, 3);
  for (const GroupSpec& g : p.groups) {
    const size_t size = size_t(g.count) * g.ffn * H;
    p.w1.emplace_back();
    p.w3.emplace_back();
    p.w2.emplace_back();
    p.g1.emplace_back();
    p.g3.emplace_back();
    p.g2.emplace_back();
    fill(p.w1.back(), size, 1.0f / std::sqrt(float(H)), 1);
    if (pushed)
      for (int row = 0; row < g.count * g.ffn; ++row)
        p.w1.back()[size_t(row) * H] = std::bernoulli_distribution(0.5)(rng) ? 32.0f : -128.0f;
    fill(p.w3.back(), size, 1.0f / std::sqrt(float(H)), 1);
    fill(p.w2.back(), size, 1.0f / std::sqrt(float(g.ffn)), 1);
    fill(p.g1.back(), size, 1.0f, 3);
    fill(p.g3.back(), size, 1.0f, 3);
    fill(p.g2.back(), size, 1.0f, 3);
  }
  return p;
}

// cuda::Experts over host buffers: the weights and gradient accumulators of `groups` are copied to
// the device at construction and at every forward (the host weights may have changed, as in the
// weight-update case), x and y around forward, dy and dx around backward; after a backward the
// device gradients are copied back into the host accumulators. The assignments stay host data.
class OnDevice final : public moekit::ExpertStage {
 public:
  OnDevice(int hidden, Activation act, std::vector<ExpertGroup> groups, moekit::Precision precision = {})
      : H_(hidden) {
    std::vector<ExpertGroup> device = std::move(groups);
    for (ExpertGroup& g : device) {
      const size_t size = size_t(g.count) * g.ffn * hidden;
      for (auto [from, to] : {std::pair{&g.w1, 0}, {&g.w3, 1}, {&g.w2, 2}}) *from = mirror(*from, size, to);
      for (auto [from, to] : {std::pair{&g.g1, 3}, {&g.g3, 4}, {&g.g2, 5}}) *from = mirror(*from, size, to);
    }
    stage_ = std::make_unique<moekit::cuda::Experts>(hidden, act, device, precision);
  }
  void forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert, const float* weight,
               float* y) override {
    for (const Mirror& m : buffers_)
      if (m.weight) m.array->upload(std::vector<float>(m.host, m.host + m.array->size()));
    T_ = T;
    n_ = n;
    emutest::DeviceArray<float> dX(std::vector<float>(x, x + size_t(T) * H_));
    emutest::DeviceArray<float> dY(std::vector<float>(y, y + size_t(T) * H_));
    stage_->forward(dX.get(), T, n, token, expert, weight, dY.get());
    const std::vector<float> out = dY.download();
    std::copy(out.begin(), out.end(), y);
  }
  void backward(const float* dy, float* dx, float* dWeight) override {
    const size_t size = size_t(T_) * H_;
    emutest::DeviceArray<float> dDy(std::vector<float>(dy, dy + size));
    emutest::DeviceArray<float> dDx(dx ? std::vector<float>(dx, dx + size) : std::vector<float>(1));
    emutest::DeviceArray<float> dDWeight(std::vector<float>(size_t(std::max(n_, 1)), NAN));
    stage_->backward(dDy.get(), dx ? dDx.get() : nullptr, dWeight ? dDWeight.get() : nullptr);
    if (dx) {
      const std::vector<float> out = dDx.download();
      std::copy(out.begin(), out.end(), dx);
    }
    if (dWeight) {
      const std::vector<float> out = dDWeight.download();
      std::copy(out.begin(), out.begin() + n_, dWeight);
    }
    for (const Mirror& m : buffers_)
      if (!m.weight) {
        const std::vector<float> out = m.array->download();
        std::copy(out.begin(), out.end(), m.host);
      }
  }
  int64_t flops(int e) const override { return stage_->flops(e); }
  int experts() const { return stage_->experts(); }
  const std::vector<int32_t>& counts() const { return stage_->counts(); }

 private:
  struct Mirror {
    float* host;
    bool weight;
    std::unique_ptr<emutest::DeviceArray<float>> array;
  };
  // The device copy of host buffer `host` [size] (kind 0–2 weights, 3–5 gradients); null stays null.
  template <class P>
  P mirror(P host, size_t size, int kind) {
    if (!host) return host;
    float* h = const_cast<float*>(host);
    buffers_.push_back({h, kind < 3, std::make_unique<emutest::DeviceArray<float>>(std::vector<float>(h, h + size))});
    return buffers_.back().array->get();
  }

  int H_, T_ = 0, n_ = 0;
  std::vector<Mirror> buffers_;
  std::unique_ptr<moekit::cuda::Experts> stage_;
};

double millisecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

using Grads = std::vector<std::vector<float>>;

// The stage's group descriptors over p's weights and the gradient buffers g1, g3, g2 (w3 and g3
// for swiglu only; g3 may be null otherwise).
std::vector<ExpertGroup> stageGroups(const Problem& p, Grads& g1, Grads* g3, Grads& g2) {
  const bool swiglu = p.act == Activation::Swiglu;
  std::vector<ExpertGroup> groups;
  for (size_t g = 0; g < p.groups.size(); ++g) {
    ExpertGroup eg;
    eg.count = p.groups[g].count;
    eg.ffn = p.groups[g].ffn;
    eg.w1 = p.w1[g].data();
    eg.w3 = swiglu ? p.w3[g].data() : nullptr;
    eg.w2 = p.w2[g].data();
    eg.g1 = g1[g].data();
    eg.g3 = swiglu ? (*g3)[g].data() : nullptr;
    eg.g2 = g2[g].data();
    groups.push_back(eg);
  }
  return groups;
}

// One forward and one backward of Stage (cpu::Experts or cuda::Experts) on p in `precision`, all
// outputs.
template <class Stage>
Result run(const Problem& p, bool wantDx = true, bool wantDWeight = true, moekit::Precision precision = {}) {
  Result r;
  r.y = p.y;
  r.dx = p.dx;
  r.dWeight.assign(size_t(p.n()), NAN);
  r.g1 = p.g1;
  r.g3 = p.g3;
  r.g2 = p.g2;
  Stage stage(p.H, p.act, stageGroups(p, r.g1, &r.g3, r.g2), precision);
  auto start = std::chrono::steady_clock::now();
  stage.forward(p.x.data(), p.T, p.n(), p.token.data(), p.expert.data(), p.weight.data(),
                r.y.data());
  r.forwardMs = millisecondsSince(start);
  start = std::chrono::steady_clock::now();
  stage.backward(p.dy.data(), wantDx ? r.dx.data() : nullptr, wantDWeight ? r.dWeight.data() : nullptr);
  r.backwardMs = millisecondsSince(start);
  for (int e = 0; e < stage.experts(); ++e) r.flops.push_back(stage.flops(e));
  return r;
}

void expectBitEqual(const std::string& what, const std::vector<float>& got,
                    const std::vector<float>& want) {
  EMU_EXPECT(got.size() == want.size(), what + ": size");
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i]));
    if (!same)
      throw emutest::Failure(what + "[" + std::to_string(i) + "]: cuda " + std::to_string(got[i]) +
                             ", cpu " + std::to_string(want[i]));
  }
}

double relativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

void expectClose(const std::string& what, const std::vector<float>& got,
                 const std::vector<float>& want) {
  EMU_EXPECT(got.size() == want.size(), what + ": size");
  const double err = relativeError(got, want);
  std::fprintf(stderr, "  %-12s relative error %.3g\n", what.c_str(), err);
  if (!(err <= kRandomTolerance))
    throw emutest::Failure(what + ": relative error " + std::to_string(err) + " > " +
                           std::to_string(kRandomTolerance));
}

// Every output of cuda::Experts against cpu::Experts: bitwise for integer data, else within
// kRandomTolerance. Prints the emulated timings.
void compareWithCpu(const Problem& p, Data data, bool wantDx = true, bool wantDWeight = true,
                    moekit::Precision precision = {}) {
  const Result want = run<moekit::cpu::Experts>(p, wantDx, wantDWeight, precision);
  const Result got = run<OnDevice>(p, wantDx, wantDWeight, precision);
  std::fprintf(stderr, "  %s H=%d T=%d n=%d: emulated forward %.1f ms, backward %.1f ms (cpu %.2f / %.2f ms)\n",
               name(p.act), p.H, p.T, p.n(), got.forwardMs, got.backwardMs, want.forwardMs,
               want.backwardMs);
  const auto compare = [&](const std::string& what, const std::vector<float>& g,
                           const std::vector<float>& w) {
    if (data == Data::Integer)
      expectBitEqual(what, g, w);
    else
      expectClose(what, g, w);
  };
  compare("y", got.y, want.y);
  compare("dx", got.dx, want.dx);
  compare("dWeight", got.dWeight, want.dWeight);
  for (size_t g = 0; g < p.groups.size(); ++g) {
    const std::string group = "[group " + std::to_string(g) + "]";
    compare("g1" + group, got.g1[g], want.g1[g]);
    compare("g2" + group, got.g2[g], want.g2[g]);
    if (p.act == Activation::Swiglu) compare("g3" + group, got.g3[g], want.g3[g]);
  }
  EMU_EXPECT(got.flops == want.flops, "flops per expert equal the CPU's");
}

// Rows per expert around the GEMM tile: 0, 1, tile − 1, tile + 1, and a few more.
const std::vector<int> kEdgeCounts = {0, 1, kTile - 1, kTile + 1, 2, kTile, 5};

// Two groups of different ffn (heterogeneous experts): 4 experts of F = f0, 3 of F = f1.
std::vector<GroupSpec> heterogeneous(int f0, int f1) { return {{4, f0}, {3, f1}}; }

// ---- integer data: bit-exact ------------------------------------------------------------------

EMU_CASE("relu on small-integer data equals the CPU bit for bit (rows 0, 1, 63, 65; H 72, F 80/24)") {
  compareWithCpu(makeProblem(Activation::Relu, 72, 70, heterogeneous(80, 24), kEdgeCounts, Data::Integer, 1),
                 Data::Integer);
}

EMU_CASE("gelu on small-integer data equals the CPU bit for bit (rows 0, 1, 63, 65)") {
  compareWithCpu(makeProblem(Activation::Gelu, 12, 70, heterogeneous(20, 8), kEdgeCounts, Data::Integer, 2),
                 Data::Integer);
}

EMU_CASE("swiglu on small-integer data equals the CPU bit for bit (rows 0, 1, 63, 65)") {
  compareWithCpu(makeProblem(Activation::Swiglu, 12, 70, heterogeneous(20, 8), kEdgeCounts, Data::Integer, 3),
                 Data::Integer);
}

// ---- random data: within kRandomTolerance -------------------------------------------------------

EMU_CASE("relu on random data is within 1e-5 of the CPU (rows 0, 1, 63, 65; H 72, F 80/40)") {
  compareWithCpu(makeProblem(Activation::Relu, 72, 70, heterogeneous(80, 40), kEdgeCounts, Data::Random, 4),
                 Data::Random);
}

EMU_CASE("gelu on random data is within 1e-5 of the CPU (rows 0, 1, 63, 65; H 72, F 80/40)") {
  compareWithCpu(makeProblem(Activation::Gelu, 72, 70, heterogeneous(80, 40), kEdgeCounts, Data::Random, 5),
                 Data::Random);
}

EMU_CASE("swiglu on random data is within 1e-5 of the CPU (rows 0, 1, 63, 65; H 72, F 80/40)") {
  compareWithCpu(makeProblem(Activation::Swiglu, 72, 70, heterogeneous(80, 40), kEdgeCounts, Data::Random, 6),
                 Data::Random);
}

// ---- precision modes: the tensor-core GEMMs, forward and backward ------------------------------
// H = 12 and F = 20 are not multiples of 8 (nor of 16): the zero-padded inner dimensions are
// exercised along with rows 0, 1, 63, 65 per expert, and the accumulators start non-zero.

const moekit::Precision kBf16{moekit::Precision::Compute::Bf16, moekit::Precision::Experts::Same};
const moekit::Precision kFp8{moekit::Precision::Compute::Bf16, moekit::Precision::Experts::Fp8};

// The GEMM path a one-expert stage in `mode` takes on this process's emulated device.
moekit::cuda::ExpertGemm gemmOf(const moekit::Precision& mode) {
  float w = 0.0f, g = 0.0f;
  const std::vector<ExpertGroup> groups = {ExpertGroup{1, 8, &w, &w, &w, nullptr, nullptr, nullptr, &g, &g, &g}};
  return moekit::cuda::Experts(8, Activation::Relu, groups, mode).gemm();
}

EMU_CASE("bf16 and fp8 modes take the tensor-core GEMMs on the emulated device (compute capability ≥ 8.9)") {
  EMU_EXPECT(gemmOf(kBf16) == moekit::cuda::ExpertGemm::TensorCore, "bf16: tensor cores");
  EMU_EXPECT(gemmOf(kFp8) == moekit::cuda::ExpertGemm::TensorCore, "fp8: tensor cores");
  EMU_EXPECT(gemmOf(moekit::Precision{}) == moekit::cuda::ExpertGemm::F32Simt, "f32: the SIMT GEMMs");
}

EMU_CASE("bf16 mode on small-integer data equals the CPU bit for bit, forward and backward (H 12, F 20/8)") {
  for (Activation act : {Activation::Swiglu, Activation::Gelu, Activation::Relu})
    compareWithCpu(makeProblem(act, 12, 70, heterogeneous(20, 8), kEdgeCounts, Data::Integer, 20 + int(act)),
                   Data::Integer, true, true, kBf16);
}

// Random data in `mode`, every activation, within 1e-5 of the CPU: H 12 with F 20/8 (seeds
// seed + act), and with `wide` also H 72 with F 80/40 (seeds seed + 10 + act).
void compareRandomWithCpu(const moekit::Precision& mode, int seed, bool wide) {
  for (Activation act : {Activation::Swiglu, Activation::Gelu, Activation::Relu}) {
    compareWithCpu(makeProblem(act, 12, 70, heterogeneous(20, 8), kEdgeCounts, Data::Random, seed + int(act)),
                   Data::Random, true, true, mode);
    if (wide) {
      compareWithCpu(makeProblem(act, 72, 70, heterogeneous(80, 40), kEdgeCounts, Data::Random, seed + 10 + int(act)),
                     Data::Random, true, true, mode);
    }
  }
}

EMU_CASE("bf16 and fp8 modes on random data are within 1e-5 of the CPU (H 12, F 20/8; H 72, F 80/40)") {
  for (const moekit::Precision& mode : {kBf16, kFp8}) compareRandomWithCpu(mode, 30, true);
}

EMU_CASE("fp8 mode on a compute capability 8.0 device takes the f32 SIMT GEMMs and is within 1e-5 of the CPU") {
  setenv("MOEKIT_EMU_SM", "80", 1);  // each case runs in its own process
  EMU_EXPECT(gemmOf(kFp8) == moekit::cuda::ExpertGemm::F32Simt, "fp8 below 8.9: the SIMT GEMMs");
  EMU_EXPECT(gemmOf(kBf16) == moekit::cuda::ExpertGemm::TensorCore, "bf16 on 8.0: tensor cores");
  compareRandomWithCpu(kFp8, 50, false);
}

EMU_CASE("fp8 mode on a compute capability 9.0 device runs the forward on the wgmma GEMM and is within 1e-5 of the CPU (H 12, F 20/8; H 72, F 80/40)") {
  setenv("MOEKIT_EMU_SM", "90", 1);
  EMU_EXPECT(gemmOf(kFp8) == moekit::cuda::ExpertGemm::TensorCoreWgmma, "fp8 on 9.0: the wgmma forward");
  EMU_EXPECT(gemmOf(kBf16) == moekit::cuda::ExpertGemm::TensorCore, "bf16 on 9.0: the mma.sync GEMMs");
  compareRandomWithCpu(kFp8, 60, true);
}

// ---- edge shapes ------------------------------------------------------------------------------

EMU_CASE("n = 0 leaves y, dx and the gradients alone and reports 0 flops") {
  for (Activation act : {Activation::Swiglu, Activation::Gelu, Activation::Relu}) {
    const Problem p = makeProblem(act, 8, 5, heterogeneous(6, 4), {0, 0, 0, 0, 0, 0, 0}, Data::Integer, 7);
    EMU_EXPECT(p.n() == 0, "no assignment");
    const Result got = run<OnDevice>(p);
    expectBitEqual("y", got.y, p.y);
    expectBitEqual("dx", got.dx, p.dx);
    for (size_t g = 0; g < p.groups.size(); ++g) {
      expectBitEqual("g1", got.g1[g], p.g1[g]);
      expectBitEqual("g2", got.g2[g], p.g2[g]);
    }
    for (int64_t f : got.flops) EMU_EXPECT(f == 0, "no flops");
  }
}

EMU_CASE("T = 1: one token routed to three experts of both groups equals the CPU") {
  for (Activation act : {Activation::Swiglu, Activation::Gelu, Activation::Relu}) {
    compareWithCpu(makeProblem(act, 12, 1, heterogeneous(20, 8), {1, 0, 0, 1, 0, 1, 0}, Data::Integer, 8),
                   Data::Integer);
    compareWithCpu(makeProblem(act, 12, 1, heterogeneous(20, 8), {1, 0, 0, 1, 0, 1, 0}, Data::Random, 9),
                   Data::Random);
  }
}

EMU_CASE("a token routed twice to one expert, and dx or dWeight not wanted, equal the CPU") {
  // T = 3 with 65 rows on expert 3: tokens repeat within an expert (ties broken by assignment).
  const Problem p = makeProblem(Activation::Swiglu, 12, 3, heterogeneous(20, 8), {2, 0, 1, 65, 0, 4, 7},
                                Data::Integer, 10);
  compareWithCpu(p, Data::Integer);
  compareWithCpu(p, Data::Integer, false, true);
  compareWithCpu(p, Data::Integer, true, false);
}

EMU_CASE("updated weights are read again at the next forward, and gradients keep accumulating (f32, bf16)") {
  for (const moekit::Precision& mode : {moekit::Precision{}, kBf16}) {
    Problem p = makeProblem(Activation::Gelu, 12, 70, heterogeneous(20, 8), kEdgeCounts, Data::Integer, 11);
    Grads g1[2] = {p.g1, p.g1}, g2[2] = {p.g2, p.g2};
    std::vector<float> y[2] = {p.y, p.y}, dx[2] = {p.dx, p.dx};
    moekit::cpu::Experts cpu(p.H, p.act, stageGroups(p, g1[0], nullptr, g2[0]), mode);
    OnDevice cuda(p.H, p.act, stageGroups(p, g1[1], nullptr, g2[1]), mode);
    for (int step = 0; step < 2; ++step) {
      for (auto& w : p.w2) std::reverse(w.begin(), w.end());  // the same buffers, new values
      cpu.forward(p.x.data(), p.T, p.n(), p.token.data(), p.expert.data(), p.weight.data(), y[0].data());
      cuda.forward(p.x.data(), p.T, p.n(), p.token.data(), p.expert.data(), p.weight.data(), y[1].data());
      cpu.backward(p.dy.data(), dx[0].data(), nullptr);
      cuda.backward(p.dy.data(), dx[1].data(), nullptr);
      expectBitEqual("y after step " + std::to_string(step), y[1], y[0]);
      expectBitEqual("dx after step " + std::to_string(step), dx[1], dx[0]);
      for (size_t g = 0; g < p.groups.size(); ++g) {
        expectBitEqual("g1", g1[1][g], g1[0][g]);
        expectBitEqual("g2", g2[1][g], g2[0][g]);
      }
    }
    EMU_EXPECT(cuda.counts() == cpu.counts(), "counts per expert");
  }
}

// ---- the permutation ---------------------------------------------------------------------------

EMU_CASE("the device row map equals cpu::planPermutation (multi-digit keys, repeats, several chunks)") {
  struct Shape {
    int T, E, n;
  };
  for (const Shape& s : {Shape{1, 1, 1}, Shape{5, 3, 17}, Shape{300, 260, 3000}, Shape{70000, 9, 600}}) {
    std::mt19937 rng(uint32_t(s.T * 31 + s.E));
    std::vector<int32_t> token(size_t(s.n)), expert(size_t(s.n));
    for (int a = 0; a < s.n; ++a) {  // repeated (token, expert) pairs on purpose
      token[size_t(a)] = std::uniform_int_distribution<int>(0, std::min(s.T, 40) - 1)(rng) * (s.T / std::min(s.T, 40));
      expert[size_t(a)] = std::uniform_int_distribution<int>(0, s.E - 1)(rng);
    }
    const moekit::cpu::PermutationPlan plan = moekit::cpu::planPermutation(s.T, s.E, s.n, token.data(), expert.data());

    emutest::DeviceArray<int32_t> dToken(token), dExpert(expert), order(size_t(s.n)), start(size_t(s.E) + 1);
    moekit::cuda::SortScratch scratch;
    moekit::cuda::fillIota(order.get(), s.n, nullptr);
    moekit::cuda::stableSortByKey(order.get(), dToken.get(), s.T, s.n, scratch, nullptr);
    moekit::cuda::stableSortByKey(order.get(), dExpert.get(), s.E, s.n, scratch, nullptr);
    moekit::cuda::segmentStarts(order.get(), dExpert.get(), s.n, s.E, start.get(), nullptr);
    EMU_EXPECT(order.download() == plan.rowAssignment,
               "rowAssignment for T=" + std::to_string(s.T) + " E=" + std::to_string(s.E));
    EMU_EXPECT(start.download() == plan.offsets, "offsets for T=" + std::to_string(s.T));
  }
}

// ---- errors ------------------------------------------------------------------------------------

EMU_CASE("invalid arguments throw the CPU backend's errors before touching the device") {
  const Problem p = makeProblem(Activation::Relu, 8, 4, heterogeneous(6, 4), {1, 1, 0, 0, 2, 0, 0}, Data::Integer, 12);
  std::vector<ExpertGroup> groups;
  for (size_t g = 0; g < p.groups.size(); ++g) {
    ExpertGroup eg;
    eg.count = p.groups[g].count;
    eg.ffn = p.groups[g].ffn;
    eg.w1 = p.w1[g].data();
    eg.w2 = p.w2[g].data();
    groups.push_back(eg);
  }
  const auto message = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const moekit::Error& e) {
      return std::to_string(int(e.kind())) + ": " + e.what();
    }
    return "no error";
  };
  moekit::cpu::Experts cpu(p.H, p.act, groups);
  moekit::cuda::Experts cuda(p.H, p.act, groups);
  std::vector<int32_t> badExpert = p.expert;
  badExpert[2] = 7;
  std::vector<float> y = p.y;
  const auto forwardBad = [&](moekit::ExpertStage& s) {
    return message([&] { s.forward(p.x.data(), p.T, p.n(), p.token.data(), badExpert.data(), p.weight.data(), y.data()); });
  };
  const auto backwardFirst = [&](moekit::ExpertStage& s) {
    return message([&] { s.backward(p.dy.data(), nullptr, nullptr); });
  };
  EMU_EXPECT(backwardFirst(cuda) == backwardFirst(cpu), "backward before forward: " + backwardFirst(cuda));
  EMU_EXPECT(forwardBad(cuda) == forwardBad(cpu), "expert out of range: " + forwardBad(cuda));
  emutest::expectContains(forwardBad(cuda), {"expert[2]", "[0, E = 7)", "got 7"});
  expectBitEqual("y after the failed forward", y, p.y);
  std::vector<ExpertGroup> noW2 = groups;
  noW2[1].w2 = nullptr;
  const std::string construct = message([&] { moekit::cuda::Experts bad(p.H, p.act, noW2); });
  EMU_EXPECT(construct == message([&] { moekit::cpu::Experts bad(p.H, p.act, noW2); }), construct);
}

EMU_CASE("a device allocation that fails throws Error(Device) naming the buffer") {
  const std::vector<float> weights(1);
  ExpertGroup huge;  // 2^36 elements per weight operand: far more than the emulated device holds
  huge.count = 1;
  huge.ffn = 1 << 16;
  huge.w1 = huge.w2 = weights.data();
  try {  // bf16: the constructor allocates the tensor-core weight operands
    moekit::cuda::Experts stage(1 << 20, Activation::Relu, {huge}, kBf16);
  } catch (const moekit::Error& e) {
    EMU_EXPECT(e.kind() == moekit::ErrorKind::Device, std::string("kind Device: ") + e.what());
    emutest::expectContains(e.what(), {"cudaMallocAsync of bf16 weight operand", "failed"});
    return;
  }
  throw emutest::Failure("expected Error(Device)");
}

}  // namespace
