// The CUDA router losses, router backward and AdamW (native/cuda/router_losses.cu,
// router_orthogonality.cu, router_backward.cu, adamw.cu, run on the SIMT emulator) against the CPU: cpu::Router's forward
// (loss values) and backward (dx, dWeight) on the same inputs, the CPU loss functions
// (cpu::zLoss, cpu::routerOrthogonality, cpu::loadBalance composed as cpu::Router::computeBalance
// does) for the float64 gradients, and cpu::adamwStep. The kernels get the routing the CPU router
// decided (its indices, keep flags and assignments) and the scores / logits / cosines computed with
// core/routing.h on the host — the functions cpu::Router runs, so they are its values bit for bit.
// Built with the emulator's harness (test/emu/harness.h, main.cc); run by
// test/cuda-router-losses.test.ts.
//
// Tolerances (relative: |got − want| / |want| for a value, ‖got − want‖₂ / ‖want‖₂ for a gradient):
//   kLossTolerance 1e-12   loss values and their float64 gradients. The kernels evaluate the CPU's
//                          expressions; only sums over tokens (balance P) or over hidden
//                          (orthogonality norms, radial parts) and each value's final total are
//                          fixed-order trees instead of sequential loops: ~1e-16 per term, so
//                          1e-12 leaves room for cancellation without hiding a wrong term (a
//                          missing token or mask moves a value by far more than 1e-6).
//   kGemmTolerance 1e-6    the f32 dx and dWeight of the backward, measured on what the backward
//                          added (‖Δgot − Δwant‖ / ‖Δwant‖). The float64 chain up to the f32
//                          logit-gradient matrix A is the CPU's, but dx += A·W and dW += Aᵀ·x
//                          sum in a different order (CPU: blocked AVX2 sgemm; device: one fmaf chain
//                          per element, grouped_gemm.h), and the R8 self sums are trees: fp32
//                          rounding of sums of ≤ ~130 terms, ~1e-7.
//   AdamW is compared bit for bit: the same f32 expressions (core/adamw.h) in the same order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/routing.h"
#include "cpu/adamw.h"
#include "cpu/losses.h"
#include "cpu/router.h"
#include "cuda/adamw.h"
#include "cuda/router_backward.h"
#include "cuda/router_losses.h"
#include "harness.h"

namespace {

// A loss launcher's value: it writes the device word handed to `launch`, read back here.
template <class Launch>
double valueOf(Launch launch) {
  emutest::DeviceArray<double> value(1);
  launch(value.get());
  EMU_CUDA(cudaDeviceSynchronize());
  return value.download()[0];
}

using emutest::DeviceArray;
using moekit::OrthMode;
using moekit::RouterSpec;
namespace routing = moekit::routing;

constexpr double kLossTolerance = 1e-12;
constexpr double kGemmTolerance = 1e-6;

// ---- comparisons --------------------------------------------------------------------------------

double relativeError(double got, double want) {
  return std::fabs(got - want) / std::max(std::fabs(want), 1e-300);
}

template <class T>
double relativeError(const std::vector<T>& got, const std::vector<T>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double(got[i]) - double(want[i])) * (double(got[i]) - double(want[i]));
    norm += double(want[i]) * double(want[i]);
  }
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-300);
}

void expectClose(double got, double want, double tolerance, const std::string& what) {
  const double err = relativeError(got, want);
  EMU_EXPECT(got == want || err <= tolerance,
             what + ": cuda " + std::to_string(got) + ", cpu " + std::to_string(want) +
                 ", relative error " + std::to_string(err));
}

template <class T>
void expectClose(const std::vector<T>& got, const std::vector<T>& want, double tolerance,
                 const std::string& what) {
  EMU_EXPECT(got.size() == want.size(), what + ": size");
  const double err = relativeError(got, want);
  EMU_EXPECT(err <= tolerance, what + ": relative error " + std::to_string(err));
}

// ---- inputs -------------------------------------------------------------------------------------

int expertCount(const RouterSpec& spec) {
  return std::accumulate(spec.groupSizes.begin(), spec.groupSizes.end(), 0);
}

std::vector<int> groupStarts(const RouterSpec& spec) {
  std::vector<int> start{0};
  for (int g : spec.groupSizes) start.push_back(start.back() + g);
  return start;
}

struct Batch {
  int T = 0;
  std::vector<float> x;
  std::vector<int32_t> modality;  // empty = none
  std::vector<int> seqLens;
};

Batch makeBatch(const RouterSpec& spec, int T, std::mt19937& rng, bool withModality,
                std::vector<int> seqLens = {}) {
  std::uniform_real_distribution<float> uniform(-1, 1);
  Batch b;
  b.T = T;
  for (int i = 0; i < T * spec.hidden; ++i) b.x.push_back(uniform(rng));
  if (withModality)
    for (int t = 0; t < T; ++t) b.modality.push_back(int32_t(rng() % 2));
  b.seqLens = std::move(seqLens);
  return b;
}

std::vector<float> makeWeight(const RouterSpec& spec, std::mt19937& rng, int zeroRow) {
  std::uniform_real_distribution<float> uniform(-1, 1);
  const int E = expertCount(spec), H = spec.hidden;
  std::vector<float> w(size_t(E) * H);
  for (float& v : w) v = uniform(rng) / std::sqrt(float(H));
  if (zeroRow >= 0) std::fill_n(&w[size_t(zeroRow) * H], H, 0.0f);
  return w;
}

// The R2 mask cpu::Router builds (empty when no modality).
std::vector<uint8_t> allowedMask(const RouterSpec& spec, const Batch& b) {
  std::vector<uint8_t> allowed;
  if (b.modality.empty()) return allowed;
  for (int t = 0; t < b.T; ++t)
    for (size_t g = 0; g < spec.groupSizes.size(); ++g)
      for (int i = 0; i < spec.groupSizes[g]; ++i) {
        const int m = spec.groupModality[g];
        allowed.push_back(m < 0 || m == b.modality[size_t(t)]);
      }
  return allowed;
}

// What cpu::Router computes internally, with the same core/routing.h functions.
struct HostRouting {
  std::vector<double> logits, s, cos, xNorm, wNorm;
};

HostRouting hostRouting(const RouterSpec& spec, const Batch& b, const std::vector<float>& w,
                        const std::vector<uint8_t>& allowed) {
  const int E = expertCount(spec), H = spec.hidden, T = b.T;
  const bool affinity = spec.type == RouterSpec::Type::Affinity;
  HostRouting r;
  r.logits.resize(size_t(T) * E);
  r.s.resize(size_t(T) * E);
  if (affinity) {
    r.cos.resize(size_t(T) * E);
    r.xNorm.resize(size_t(T));
    for (int e = 0; e < E; ++e) r.wNorm.push_back(routing::rowNorm(&w[size_t(e) * H], H));
  }
  for (int t = 0; t < T; ++t) {
    const float* xt = &b.x[size_t(t) * H];
    double* l = &r.logits[size_t(t) * E];
    if (affinity) {
      r.xNorm[size_t(t)] = routing::rowNorm(xt, H);
      routing::cosineLogitsRow(xt, w.data(), r.wNorm.data(), H, E, spec.temperature,
                               &r.cos[size_t(t) * E], l);
    } else {
      routing::linearLogitsRow(xt, w.data(), H, E, l);
    }
    routing::scoresRow(l, allowed.empty() ? nullptr : &allowed[size_t(t) * E], E,
                       affinity ? routing::ScoreFn::Softmax : spec.score, &r.s[size_t(t) * E]);
  }
  return r;
}

// ---- the CPU's float64 loss gradients -------------------------------------------------------------

// cpu::Router::computeBalance composed from cpu::loadBalance (the router keeps its gradient
// private): value and d/d logits. Its value is checked against the router's Routing.balance.
struct Reference {
  double value = 0;
  std::vector<double> dLogits;
};

Reference referenceBalance(const moekit::cuda::BalanceArgs& a, const std::vector<double>& s,
                           const std::vector<uint8_t>& allowed, const std::vector<int32_t>& selIdx,
                           routing::ScoreFn fn) {
  const int T = a.T, E = a.E, k = a.k, G = int(a.groupStart.size()) - 1;
  const bool window = a.scope == RouterSpec::Scope::Global;
  auto allowedRow = [&](int t) { return allowed.empty() ? nullptr : &allowed[size_t(t) * E]; };
  std::vector<double> sn(s), sSum(size_t(T), 1.0), dNorm(size_t(T) * E, 0.0);
  if (a.sigmoid)
    for (int t = 0; t < T; ++t) {
      double sum = 0;
      for (int e = 0; e < E; ++e) sum += sn[size_t(t) * E + e];
      sSum[size_t(t)] = sum;
      for (int e = 0; e < E; ++e) sn[size_t(t) * E + e] = sum > 0 ? sn[size_t(t) * E + e] / sum : 0.0;
    }
  auto over = [&](int t0, int t1, double weight) {
    double value = 0;
    for (int g = 0; g < G; ++g) {
      const int e0 = a.groupStart[size_t(g)], width = a.groupStart[size_t(g) + 1] - e0;
      std::vector<int> members;
      for (int t = t0; t < t1; ++t)
        if (routing::isAllowed(allowedRow(t), e0)) members.push_back(t);
      const int S = int(members.size());
      if (S == 0) continue;
      std::vector<double> probs, grad(size_t(S) * width);
      for (int t : members) probs.insert(probs.end(), &sn[size_t(t) * E + e0], &sn[size_t(t) * E + e0] + width);
      std::vector<int64_t> counts(size_t(width), 0);
      double counted = S;
      if (window) {
        std::copy_n(&a.windowCounts[size_t(e0)], width, counts.begin());
        counted = double(a.windowGroupTokens[size_t(g)]);
      } else {
        for (int t : members)
          for (int j = 0; j < k; ++j) {
            const int e = selIdx[size_t(t) * k + j];
            if (e >= e0 && e < e0 + width) ++counts[size_t(e - e0)];
          }
      }
      const double share = weight * S / (t1 - t0);
      value += share * moekit::cpu::loadBalance(probs.data(), S, width, counts.data(), counted, k,
                                                a.coeff, grad.data());
      for (int i = 0; i < S; ++i)
        for (int e = 0; e < width; ++e)
          dNorm[size_t(members[size_t(i)]) * E + e0 + e] += share * grad[size_t(i) * width + e];
    }
    return value;
  };
  Reference r;
  if (a.scope == RouterSpec::Scope::Sequence) {
    for (size_t i = 0, t0 = 0; i < a.seqLens.size(); t0 += size_t(a.seqLens[i]), ++i)
      r.value += over(int(t0), int(t0) + a.seqLens[i], 1.0 / double(a.seqLens.size()));
  } else {
    r.value = over(0, T, 1.0);
  }
  r.dLogits.assign(size_t(T) * E, 0.0);
  std::vector<double> ds(static_cast<size_t>(E));
  for (int t = 0; t < T; ++t) {
    const double* dn = &dNorm[size_t(t) * E];
    const double* sr = &sn[size_t(t) * E];
    double dot = 0;
    for (int e = 0; e < E; ++e) dot += dn[e] * sr[e];
    for (int e = 0; e < E; ++e)
      ds[size_t(e)] = !a.sigmoid ? dn[e] : sSum[size_t(t)] > 0 ? (dn[e] - dot) / sSum[size_t(t)] : 0.0;
    routing::scoresRowBackward(&s[size_t(t) * E], allowedRow(t), E, fn, ds.data(), &r.dLogits[size_t(t) * E]);
  }
  return r;
}

Reference referenceZ(const std::vector<double>& logits, const std::vector<uint8_t>& allowed, int T,
                     int E, double coeff) {
  std::vector<double> masked(logits);
  for (size_t i = 0; i < masked.size(); ++i)
    if (!allowed.empty() && !allowed[i]) masked[i] = -INFINITY;
  Reference r;
  r.dLogits.resize(masked.size());
  r.value = moekit::cpu::zLoss(masked.data(), T, E, coeff, r.dLogits.data());
  return r;
}

Reference referenceOrthogonality(const RouterSpec& spec, const std::vector<float>& w) {
  const std::vector<double> w64(w.begin(), w.end());
  Reference r;
  r.dLogits.resize(w.size());  // here: d/d weight [E,H]
  r.value = moekit::cpu::routerOrthogonality(w64.data(), expertCount(spec), spec.hidden,
                                             spec.groupSizes.data(), int(spec.groupSizes.size()),
                                             spec.orthMode, spec.orthCoeff, r.dLogits.data());
  return r;
}

// ---- one comparison: forwards (the last one differentiated) on the CPU and on the device ----------

struct Case {
  RouterSpec spec;
  std::vector<Batch> batches;  // forwards within one window; the last is checked and differentiated
  std::vector<float> w;
};

moekit::cuda::BalanceArgs balanceArgs(const RouterSpec& spec, const Batch& b,
                                      const std::vector<uint8_t>& allowed,
                                      const std::vector<int64_t>& windowCounts,
                                      const std::vector<int64_t>& windowGroupTokens) {
  moekit::cuda::BalanceArgs a;
  a.T = b.T;
  a.E = expertCount(spec);
  a.k = spec.topK;
  a.sigmoid = spec.type != RouterSpec::Type::Affinity && spec.score == RouterSpec::Score::Sigmoid;
  a.coeff = spec.balanceCoeff;
  a.scope = spec.scope;
  a.groupStart = allowed.empty() ? std::vector<int>{0, a.E} : groupStarts(spec);
  a.seqLens = b.seqLens;
  a.windowCounts = windowCounts;
  a.windowGroupTokens = windowGroupTokens;
  return a;
}

void compareWithCpu(const Case& c, uint32_t seed) {
  const RouterSpec& spec = c.spec;
  const int E = expertCount(spec), H = spec.hidden, k = spec.topK;
  const bool expertChoice = spec.type == RouterSpec::Type::ExpertChoice;
  const bool affinity = spec.type == RouterSpec::Type::Affinity;
  const routing::ScoreFn fn = affinity ? routing::ScoreFn::Softmax : spec.score;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1, 1);

  // ---- CPU: every forward of the window, then the backward of the last.
  moekit::cpu::Router router(spec);
  const moekit::RouterParams params{c.w.data(), nullptr, nullptr};
  moekit::Routing want;
  std::vector<int64_t> windowCounts(size_t(E), 0), groupTokens;
  for (const Batch& b : c.batches) {
    router.forward(b.x.data(), b.T, b.modality.empty() ? nullptr : b.modality.data(), b.seqLens,
                   params, want, true);
    for (int e = 0; e < E; ++e) windowCounts[size_t(e)] += want.counts[size_t(e)];
    const std::vector<uint8_t> mask = allowedMask(spec, b);
    const std::vector<int> start = mask.empty() ? std::vector<int>{0, E} : groupStarts(spec);
    groupTokens.resize(start.size() - 1, 0);
    for (size_t g = 0; g + 1 < start.size(); ++g)
      for (int t = 0; t < b.T; ++t)
        groupTokens[g] += mask.empty() || mask[size_t(t) * E + size_t(start[g])];
  }
  const Batch& b = c.batches.back();
  const int T = b.T;
  std::vector<float> dAssign(want.assignWeight.size());
  for (float& v : dAssign) v = uniform(rng);
  std::vector<float> dx0(size_t(T) * H), dW0(size_t(E) * H);
  for (float& v : dx0) v = 0.1f * uniform(rng);
  for (float& v : dW0) v = 0.1f * uniform(rng);
  std::vector<float> dxCpu(dx0), dWCpu(dW0);
  router.backward(dAssign.data(), dxCpu.data(), dWCpu.data());

  // ---- device inputs: the CPU router's decisions and its (host-recomputed) scores.
  const std::vector<uint8_t> allowed = allowedMask(spec, b);
  const HostRouting host = hostRouting(spec, b, c.w, allowed);
  DeviceArray<double> s(host.s), logits(host.logits);
  DeviceArray<uint8_t> allowedDev(allowed.empty() ? std::vector<uint8_t>{0} : allowed);
  const uint8_t* allowedPtr = allowed.empty() ? nullptr : allowedDev.get();
  const std::vector<int32_t> idx = expertChoice ? std::vector<int32_t>{0} : want.indices;
  DeviceArray<int32_t> idxDev(idx);
  const std::vector<double> zeros(size_t(T) * E, 0.0);
  DeviceArray<double> dAux(zeros);  // every loss adds into it, as cuda::Router does

  // ---- L1–L3.
  if (spec.balanceCoeff != 0 && !expertChoice) {
    const moekit::cuda::BalanceArgs a = balanceArgs(spec, b, allowed, windowCounts, groupTokens);
    const Reference ref = referenceBalance(a, host.s, allowed, want.indices, fn);
    expectClose(ref.value, want.balance, 1e-14, "test oracle: balance value vs cpu::Router");
    DeviceArray<double> dBalance(zeros);
    const double got = valueOf([&](double* v) { moekit::cuda::balanceLoss(a, s.get(), allowedPtr, idxDev.get(), dBalance.get(), v, nullptr); });
    expectClose(got, want.balance, kLossTolerance, "balance value");
    expectClose(dBalance.download(), ref.dLogits, kLossTolerance, "balance d/dlogits");
    valueOf([&](double* v) { moekit::cuda::balanceLoss(a, s.get(), allowedPtr, idxDev.get(), dAux.get(), v, nullptr); });
  }
  // ---- L4.
  if (spec.zCoeff != 0) {
    const Reference ref = referenceZ(host.logits, allowed, T, E, spec.zCoeff);
    expectClose(ref.value, want.z, 0, "test oracle: z value vs cpu::Router");
    DeviceArray<double> dZ(zeros);
    const double got = valueOf([&](double* v) { moekit::cuda::zLoss(T, E, spec.zCoeff, logits.get(), allowedPtr, dZ.get(), v, nullptr); });
    expectClose(got, want.z, kLossTolerance, "z value");
    expectClose(dZ.download(), ref.dLogits, kLossTolerance, "z d/dlogits");
    valueOf([&](double* v) { moekit::cuda::zLoss(T, E, spec.zCoeff, logits.get(), allowedPtr, dAux.get(), v, nullptr); });
  }
  // ---- L5.
  DeviceArray<float> W(c.w);
  DeviceArray<double> dOrth(std::vector<double>(size_t(E) * H, -1.0));  // overwritten
  if (spec.orthCoeff != 0) {
    const Reference ref = referenceOrthogonality(spec, c.w);
    expectClose(ref.value, want.orthogonality, 0, "test oracle: orthogonality value vs cpu::Router");
    const double got = valueOf([&](double* v) {
      moekit::cuda::orthogonalityLoss(E, H, spec.groupSizes, spec.orthMode, spec.orthCoeff, W.get(), dOrth.get(), v, nullptr);
    });
    expectClose(got, want.orthogonality, kLossTolerance, "orthogonality value");
    expectClose(dOrth.download(), ref.dLogits, kLossTolerance, "orthogonality d/dweight");
  }

  // ---- backward.
  std::vector<double> dSlot(expertChoice ? 1 : size_t(T) * k, 0.0);
  if (!expertChoice)
    for (size_t slot = 0, a = 0; slot < want.keep.size(); ++slot)
      if (want.keep[slot]) dSlot[slot] = dAssign[a++];
  DeviceArray<double> dSlotDev(dSlot);
  const size_t picks = expertChoice ? dAssign.size() : 0;
  DeviceArray<int32_t> ecToken(expertChoice && picks ? want.assignToken : std::vector<int32_t>{0});
  DeviceArray<int32_t> ecExpert(expertChoice && picks ? want.assignExpert : std::vector<int32_t>{0});
  DeviceArray<float> ecDw(expertChoice && picks ? dAssign : std::vector<float>{0});
  DeviceArray<float> x(b.x), dx(dx0), dW(dW0);
  DeviceArray<double> xNorm(affinity ? host.xNorm : std::vector<double>{0});
  DeviceArray<double> wNorm(affinity ? host.wNorm : std::vector<double>{0});
  DeviceArray<double> cos(affinity ? host.cos : std::vector<double>{0});
  moekit::cuda::RouterBackwardArgs a;
  a.T = T;
  a.E = E;
  a.H = H;
  a.k = expertChoice ? 0 : k;
  a.fn = fn;
  a.expertChoice = expertChoice;
  a.affinity = affinity;
  a.normalize = spec.normalize;
  a.scale = spec.scale;
  a.temperature = spec.temperature;
  moekit::cuda::routerBackward(a, s.get(), expertChoice ? nullptr : idxDev.get(),
                               expertChoice ? nullptr : dSlotDev.get(), ecToken.get(), ecExpert.get(),
                               ecDw.get(), int64_t(picks), allowedPtr, dAux.get(), x.get(), W.get(),
                               affinity ? xNorm.get() : nullptr, affinity ? wNorm.get() : nullptr,
                               affinity ? cos.get() : nullptr,
                               spec.orthCoeff != 0 ? dOrth.get() : nullptr, dx.get(), dW.get(), nullptr);
  const auto added = [](const std::vector<float>& after, const std::vector<float>& before) {
    std::vector<double> d(after.size());
    for (size_t i = 0; i < d.size(); ++i) d[i] = double(after[i]) - double(before[i]);
    return d;
  };
  expectClose(added(dx.download(), dx0), added(dxCpu, dx0), kGemmTolerance, "backward dx");
  expectClose(added(dW.download(), dW0), added(dWCpu, dW0), kGemmTolerance, "backward dWeight");
}

RouterSpec baseSpec(int H, std::vector<int> groups, int k) {
  RouterSpec spec;
  spec.hidden = H;
  spec.groupSizes = std::move(groups);
  spec.groupModality.assign(spec.groupSizes.size(), -1);
  spec.topK = k;
  return spec;
}

Case makeCase(RouterSpec spec, std::vector<int> batchTokens, uint32_t seed, bool withModality,
              int zeroRow = -1, std::vector<int> seqLens = {}) {
  std::mt19937 rng(seed);
  Case c;
  c.w = makeWeight(spec, rng, zeroRow);
  for (int T : batchTokens) c.batches.push_back(makeBatch(spec, T, rng, withModality, seqLens));
  c.spec = std::move(spec);
  return c;
}

// ---- cases: the router losses and backward vs cpu::Router -----------------------------------------

EMU_CASE("softmax top-2: L1 micro, z and orthogonality (all) values, gradients and backward equal cpu::Router") {
  RouterSpec spec = baseSpec(24, {8}, 2);
  spec.balanceCoeff = 0.01;
  spec.zCoeff = 0.001;
  spec.orthCoeff = 0.1;
  compareWithCpu(makeCase(spec, {70}, 1, false), 11);
}

EMU_CASE("sigmoid top-3 normalized with scale 2.5: L1 micro (s̃ = s/Σs) and z equal cpu::Router") {
  RouterSpec spec = baseSpec(20, {10}, 3);
  spec.score = RouterSpec::Score::Sigmoid;
  spec.normalize = true;
  spec.scale = 2.5;
  spec.balanceCoeff = 0.02;
  spec.zCoeff = 0.003;
  compareWithCpu(makeCase(spec, {64}, 2, false), 12);
}

EMU_CASE("L3 sequence scope (seqLens 13, 40, 1, 26) equals cpu::Router") {
  RouterSpec spec = baseSpec(16, {6}, 2);
  spec.scope = RouterSpec::Scope::Sequence;
  spec.balanceCoeff = 0.05;
  compareWithCpu(makeCase(spec, {80}, 3, false, -1, {13, 40, 1, 26}), 13);
}

EMU_CASE("L2 global scope over two forwards in one window equals cpu::Router (second forward)") {
  RouterSpec spec = baseSpec(18, {8}, 2);
  spec.scope = RouterSpec::Scope::Global;
  spec.balanceCoeff = 0.01;
  spec.zCoeff = 0.001;
  compareWithCpu(makeCase(spec, {40, 57}, 4, false), 14);
}

EMU_CASE("modality balance groups (-1/0/1) with L1 micro and a masked z-loss equal cpu::Router") {
  RouterSpec spec = baseSpec(20, {4, 3, 5}, 2);
  spec.groupModality = {-1, 0, 1};
  spec.balanceCoeff = 0.01;
  spec.zCoeff = 0.002;
  spec.orthCoeff = 0.05;
  spec.orthMode = OrthMode::PerGroup;
  compareWithCpu(makeCase(spec, {60}, 5, true), 15);
}

EMU_CASE("modality balance groups with sigmoid, L2 global over two forwards equal cpu::Router") {
  RouterSpec spec = baseSpec(20, {4, 4, 4}, 2);
  spec.groupModality = {-1, 0, 1};
  spec.score = RouterSpec::Score::Sigmoid;
  spec.scope = RouterSpec::Scope::Global;
  spec.balanceCoeff = 0.03;
  spec.zCoeff = 0.001;
  compareWithCpu(makeCase(spec, {33, 50}, 6, true), 16);
}

EMU_CASE("modality balance groups with L3 sequence scope equal cpu::Router") {
  RouterSpec spec = baseSpec(16, {3, 5}, 2);
  spec.groupModality = {0, -1};
  spec.scope = RouterSpec::Scope::Sequence;
  spec.balanceCoeff = 0.04;
  compareWithCpu(makeCase(spec, {45}, 7, true, -1, {20, 5, 20}), 17);
}

EMU_CASE("orthogonality perGroup with a zero row: value, gradient (0 on the row) and backward equal cpu::Router") {
  RouterSpec spec = baseSpec(12, {3, 5, 4}, 2);
  spec.orthCoeff = 0.3;
  spec.orthMode = OrthMode::PerGroup;
  compareWithCpu(makeCase(spec, {30}, 8, false, 4), 18);
}

EMU_CASE("orthogonality crossGroup with a zero row equals cpu::Router") {
  RouterSpec spec = baseSpec(12, {3, 5, 4}, 2);
  spec.orthCoeff = 0.3;
  spec.orthMode = OrthMode::CrossGroup;
  spec.balanceCoeff = 0.01;
  compareWithCpu(makeCase(spec, {30}, 9, false, 6), 19);
}

EMU_CASE("orthogonality all over H 300 (several 256-thread row passes) equals cpu::Router") {
  RouterSpec spec = baseSpec(300, {5}, 1);
  spec.orthCoeff = 0.2;
  compareWithCpu(makeCase(spec, {9}, 10, false, 2), 20);
}

EMU_CASE("affinity (R8, temperature 0.4) backward with its self terms, balance, z and orthogonality equals cpu::Router") {
  RouterSpec spec = baseSpec(21, {8}, 2);
  spec.type = RouterSpec::Type::Affinity;
  spec.temperature = 0.4;
  spec.balanceCoeff = 0.01;
  spec.zCoeff = 0.001;
  spec.orthCoeff = 0.1;
  compareWithCpu(makeCase(spec, {50}, 11, false, 3), 21);
}

EMU_CASE("expert-choice (R9) backward with z-loss and orthogonality equals cpu::Router") {
  RouterSpec spec = baseSpec(16, {8}, 2);
  spec.type = RouterSpec::Type::ExpertChoice;
  spec.capacityFactor = 1.5;
  spec.zCoeff = 0.002;
  spec.orthCoeff = 0.1;
  compareWithCpu(makeCase(spec, {40}, 12, false), 22);
}

EMU_CASE("normalize + scale with capacity drops (position, factor 0.7): dropped slots' R7 terms equal cpu::Router") {
  RouterSpec spec = baseSpec(16, {8}, 3);
  spec.normalize = true;
  spec.scale = 1.75;
  spec.capacityFactor = 0.7;
  spec.balanceCoeff = 0.01;
  compareWithCpu(makeCase(spec, {48}, 13, false), 23);
}

EMU_CASE("the losses and the backward give the same bits on every run (fixed-order reductions)") {
  RouterSpec spec = baseSpec(300, {6, 6}, 2);
  spec.groupModality = {0, 1};
  spec.type = RouterSpec::Type::Affinity;
  const Case c = makeCase(spec, {300}, 14, true, -1, {100, 200});
  const Batch& b = c.batches.back();
  const int E = 12, H = 300, T = b.T;
  const std::vector<uint8_t> allowed = allowedMask(spec, b);
  const HostRouting host = hostRouting(spec, b, c.w, allowed);
  std::vector<int32_t> sel(size_t(T) * 2);
  for (int t = 0; t < T; ++t)
    routing::topKRow(&host.s[size_t(t) * E], E, 2, &sel[size_t(t) * 2]);
  DeviceArray<double> s(host.s), logits(host.logits), xNorm(host.xNorm), wNorm(host.wNorm), cos(host.cos);
  DeviceArray<uint8_t> allowedDev(allowed);
  DeviceArray<int32_t> selDev(sel);
  DeviceArray<float> W(c.w), x(b.x);
  std::vector<double> dSlot(sel.size());
  std::mt19937 rng(5);
  for (double& v : dSlot) v = std::uniform_real_distribution<double>(-1, 1)(rng);
  DeviceArray<double> dSlotDev(dSlot);
  std::vector<std::vector<double>> values;
  std::vector<std::vector<float>> grads;
  for (int run = 0; run < 2; ++run) {
    spec.scope = RouterSpec::Scope::Sequence;
    moekit::cuda::BalanceArgs a = balanceArgs(spec, b, allowed, {}, {});
    a.coeff = 0.01;
    DeviceArray<double> dAux(std::vector<double>(size_t(T) * E, 0.0)), dOrth(size_t(E) * H);
    std::vector<double> v;
    v.push_back(valueOf([&](double* out) { moekit::cuda::balanceLoss(a, s.get(), allowedDev.get(), selDev.get(), dAux.get(), out, nullptr); }));
    v.push_back(valueOf([&](double* out) { moekit::cuda::zLoss(T, E, 0.01, logits.get(), allowedDev.get(), dAux.get(), out, nullptr); }));
    v.push_back(valueOf([&](double* out) { moekit::cuda::orthogonalityLoss(E, H, {6, 6}, OrthMode::All, 0.1, W.get(), dOrth.get(), out, nullptr); }));
    moekit::cuda::RouterBackwardArgs ba;
    ba.T = T;
    ba.E = E;
    ba.H = H;
    ba.k = 2;
    ba.affinity = true;
    ba.temperature = 0.5;
    DeviceArray<float> dx(std::vector<float>(size_t(T) * H, 0.0f)), dW(std::vector<float>(size_t(E) * H, 0.0f));
    moekit::cuda::routerBackward(ba, s.get(), selDev.get(), dSlotDev.get(), nullptr, nullptr, nullptr, 0,
                                 allowedDev.get(), dAux.get(), x.get(), W.get(), xNorm.get(), wNorm.get(),
                                 cos.get(), dOrth.get(), dx.get(), dW.get(), nullptr);
    const std::vector<double> aux = dAux.download(), orth = dOrth.download();
    v.insert(v.end(), aux.begin(), aux.end());
    v.insert(v.end(), orth.begin(), orth.end());
    values.push_back(v);
    std::vector<float> g = dx.download();
    const std::vector<float> gw = dW.download();
    g.insert(g.end(), gw.begin(), gw.end());
    grads.push_back(g);
  }
  EMU_EXPECT(std::memcmp(values[0].data(), values[1].data(), values[0].size() * sizeof(double)) == 0,
             "loss values and float64 gradients differ between two runs");
  EMU_EXPECT(std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)) == 0,
             "dx / dWeight differ between two runs");
}

// ---- the checks can fail --------------------------------------------------------------------------

// A deliberately broken z-loss kernel, compiled only into this test: it ignores the R2 mask (the
// logsumexp runs over every expert). The comparison of the real cases must reject it.
__global__ void zLossIgnoringMaskKernel(int T, int E, const double* logits, double* lseSquared) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= T) return;
  const double lse = routing::logSumExpRow(logits + int64_t(t) * E, nullptr, E);
  lseSquared[t] = lse * lse;
}

EMU_CASE("a z-loss kernel that ignores the modality mask is rejected by the comparison") {
  RouterSpec spec = baseSpec(20, {4, 4, 4}, 2);
  spec.groupModality = {-1, 0, 1};
  spec.zCoeff = 0.002;
  const Case c = makeCase(spec, {60}, 15, true);
  const Batch& b = c.batches.back();
  moekit::cpu::Router router(spec);
  moekit::Routing want;
  router.forward(b.x.data(), b.T, b.modality.data(), {}, {c.w.data(), nullptr, nullptr}, want, true);
  const HostRouting host = hostRouting(spec, b, c.w, allowedMask(spec, b));
  DeviceArray<double> logits(host.logits), lseSquared(size_t(b.T));
  EMU_CUDA(moekit::launch<zLossIgnoringMaskKernel>(dim3(1), dim3(64), 0, nullptr, b.T, 12,
                                                   logits.get(), lseSquared.get()));
  const std::vector<double> terms = lseSquared.download();
  const double broken = spec.zCoeff * std::accumulate(terms.begin(), terms.end(), 0.0) / b.T;
  const double err = relativeError(broken, want.z);
  EMU_EXPECT(err > kLossTolerance, "the broken kernel passed the comparison (relative error " +
                                       std::to_string(err) + ")");
  bool rejected = false;
  try {
    expectClose(broken, want.z, kLossTolerance, "z value");
  } catch (const emutest::Failure&) {
    rejected = true;
  }
  EMU_EXPECT(rejected, "expectClose accepted the broken z value");
}

// ---- argument checks -----------------------------------------------------------------------------

std::string errorOf(const std::function<void()>& call) {
  try {
    call();
  } catch (const moekit::Error& e) {
    return std::string(e.kind() == moekit::ErrorKind::Shape ? "Shape: " : "Argument: ") + e.what();
  }
  return "no error";
}

EMU_CASE("launchers reject bad arguments before touching memory, naming the argument") {
  moekit::cuda::BalanceArgs a;
  a.T = 4;
  a.E = 4;
  a.k = 2;
  a.coeff = 0.1;
  a.groupStart = {0, 4};
  a.scope = RouterSpec::Scope::Sequence;
  a.seqLens = {2, 3};
  emutest::expectContains(errorOf([&] { moekit::cuda::balanceLoss(a, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr); }),
                          {"Shape: ", "seqLens", "summing to the token count 4, got 5"});
  a.seqLens = {4};
  a.groupStart = {0, 3};
  emutest::expectContains(errorOf([&] { moekit::cuda::balanceLoss(a, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr); }),
                          {"Argument: ", "groupStart"});
  a.groupStart = {0, 4};
  emutest::expectContains(errorOf([&] { moekit::cuda::balanceLoss(a, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr); }),
                          {"Argument: ", "s: expected a device buffer"});
  a.scope = RouterSpec::Scope::Global;
  emutest::expectContains(errorOf([&] { moekit::cuda::balanceLoss(a, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr); }),
                          {"Shape: ", "windowCounts"});
  emutest::expectContains(errorOf([&] { moekit::cuda::zLoss(3, 0, 0.1, nullptr, nullptr, nullptr, nullptr, nullptr); }),
                          {"Shape: ", "E: expected a positive expert count"});
  emutest::expectContains(
      errorOf([&] { moekit::cuda::orthogonalityLoss(5, 4, {2, 2}, OrthMode::All, 0.1, nullptr, nullptr, nullptr, nullptr); }),
      {"Argument: ", "groupSizes: expected sizes summing to E = 5, got 4"});
  moekit::cuda::RouterBackwardArgs ba;
  ba.T = 2;
  ba.E = 4;
  ba.H = 3;
  ba.k = 5;
  emutest::expectContains(errorOf([&] {
                            moekit::cuda::routerBackward(ba, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                                         nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                         nullptr, nullptr, nullptr, nullptr, nullptr);
                          }),
                          {"Argument: ", "k: expected an integer in [1, 4], got 5"});
  ba.k = 2;
  emutest::expectContains(errorOf([&] {
                            moekit::cuda::routerBackward(ba, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0,
                                                         nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                                         nullptr, nullptr, nullptr, nullptr, nullptr);
                          }),
                          {"Argument: ", "W: expected a device buffer, got null"});
}

// ---- AdamW ---------------------------------------------------------------------------------------

EMU_CASE("AdamW: five steps equal cpu::adamwStep bit for bit (param, m, v)") {
  const int64_t n = 3000;
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> param(n), m(n, 0.0f), v(n, 0.0f);
  for (float& p : param) p = normal(rng);
  moekit::cpu::AdamWConfig config;
  config.lr = 3e-3;
  config.weightDecay = 0.1;
  DeviceArray<float> paramDev(param), mDev(m), vDev(v);
  for (int64_t step = 1; step <= 5; ++step) {
    std::vector<float> grad(n);
    for (float& g : grad) g = normal(rng) * (step == 3 ? 1e-4f : 1.0f);
    DeviceArray<float> gradDev(grad);
    moekit::cpu::adamwStep(param.data(), grad.data(), m.data(), v.data(), n, config, step);
    moekit::cuda::adamwStep(paramDev.get(), gradDev.get(), mDev.get(), vDev.get(), n, config, step, nullptr);
  }
  EMU_EXPECT(std::memcmp(paramDev.download().data(), param.data(), n * sizeof(float)) == 0, "param bits");
  EMU_EXPECT(std::memcmp(mDev.download().data(), m.data(), n * sizeof(float)) == 0, "m bits");
  EMU_EXPECT(std::memcmp(vDev.download().data(), v.data(), n * sizeof(float)) == 0, "v bits");
}

EMU_CASE("AdamW rejects what cpu::adamwStep rejects, with its messages") {
  moekit::cpu::AdamWConfig config;
  config.beta2 = 1.0;
  float p = 0;
  const std::string cpu = errorOf([&] { moekit::cpu::adamwStep(&p, &p, &p, &p, 1, config, 1); });
  const std::string cuda = errorOf([&] { moekit::cuda::adamwStep(&p, &p, &p, &p, 1, config, 1, nullptr); });
  EMU_EXPECT(cuda == cpu, "cuda: " + cuda + " / cpu: " + cpu);
  emutest::expectContains(cuda, {"beta2"});
  config = moekit::cpu::AdamWConfig();
  emutest::expectContains(errorOf([&] { moekit::cuda::adamwStep(&p, &p, &p, &p, 1, config, 0, nullptr); }),
                          {"step"});
  emutest::expectContains(errorOf([&] { moekit::cuda::adamwStep(nullptr, &p, &p, &p, 1, config, 1, nullptr); }),
                          {"param must not be null"});
}

}  // namespace
