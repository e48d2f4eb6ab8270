// Dev harness for the CPU expert path: grouped GEMM, permute/unpermute, Experts (X1–X2), AdamW.
// Not part of the CMake build. Build and run from the repository root:
//
//   g++ -std=c++17 -O2 -Wall -Wextra -Inative test/native/experts_check.cc native/cpu/experts.cc
//       native/cpu/dispatch.cc native/cpu/grouped_gemm.cc native/cpu/adamw.cc -o /tmp/experts_check
//   /tmp/experts_check [golden dir, default /work/shared/golden]
//
// Checks, in order:
//   1. golden forward: y from input.x, the params and the golden routing (kept slots of
//      expect.indices/expect.weights; plus the shared experts at weight 1) against expect.y
//   2. golden backward: expert weight grads with dy = input.dy against expect.grad.experts.* and
//      expect.grad.shared.* (the router never touches expert weights: only the expert path counts)
//   3. finite differences, in float64 on a float64 reference of X1–X2, of dx, every weight grad
//      and dWeight, for each activation and two heterogeneous groups
//   4. properties and edge cases: permute→unpermute identity, stable order, n = 0, T = 1, an
//      expert with no tokens, misuse errors; grouped GEMM and AdamW against float64 references
//
// Tolerances: the library computes in fp32 (fp32 accumulation over at most 64 terms here), so its
// results sit ~1e-7 relative from float64; 1e-5 leaves room for the golden cases' own fp32 rounding
// of inputs and outputs. Finite differences use h = 1e-6 in float64 (truncation ~h²) and compare
// against the fp32 analytic gradients, so 1e-4 relative to the gradient's norm.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cpu/adamw.h"
#include "cpu/dispatch.h"
#include "cpu/experts.h"
#include "cpu/grouped_gemm.h"

using namespace moekit;
using namespace moekit::cpu;

static int failures = 0;

static void report(bool ok, const std::string& what, double value, double tol) {
  std::printf("%s  %-72s %.3e (tol %.0e)\n", ok ? "ok  " : "FAIL", what.c_str(), value, tol);
  if (!ok) ++failures;
}

static void expect(bool ok, const std::string& what) {
  std::printf("%s  %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

template <class A, class B>
static double relL2(const A& got, const B& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (double(got[i]) - double(want[i])) * (double(got[i]) - double(want[i]));
    den += double(want[i]) * double(want[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// ---- safetensors ------------------------------------------------------------------------------

struct Tensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<float> f;
  std::vector<int32_t> i;
  int64_t dim(int d) const { return shape[size_t(d)]; }
};

class Safetensors {
 public:
  explicit Safetensors(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    bytes_ = ss.str();
    uint64_t n;
    std::memcpy(&n, bytes_.data(), 8);
    header_ = bytes_.substr(8, n);
    data_ = 8 + n;
  }
  bool has(const std::string& name) const {
    return header_.find("\"" + name + "\":") != std::string::npos;
  }
  // Reads one tensor; the header's keys are unescaped, so "name": cannot match inside metadata.
  Tensor get(const std::string& name) const {
    size_t p = header_.find("\"" + name + "\":");
    if (p == std::string::npos) throw std::runtime_error("missing tensor " + name);
    const size_t end = header_.find('}', p);
    const std::string e = header_.substr(p, end - p);
    Tensor t;
    size_t d = e.find("\"dtype\"");
    d = e.find('"', e.find(':', d) + 1);
    t.dtype = e.substr(d + 1, e.find('"', d + 1) - d - 1);
    t.shape = ints(e, "\"shape\"");
    const std::vector<int64_t> off = ints(e, "\"data_offsets\"");
    const char* src = bytes_.data() + data_ + off[0];
    const size_t count = size_t(off[1] - off[0]) / 4;
    if (t.dtype == "F32") {
      t.f.resize(count);
      std::memcpy(t.f.data(), src, count * 4);
    } else if (t.dtype == "I32") {
      t.i.resize(count);
      std::memcpy(t.i.data(), src, count * 4);
    } else {
      throw std::runtime_error("unexpected dtype " + t.dtype + " of " + name);
    }
    return t;
  }

 private:
  static std::vector<int64_t> ints(const std::string& e, const std::string& key) {
    const size_t b = e.find('[', e.find(key)), end = e.find(']', b);
    std::vector<int64_t> out;
    std::stringstream ss(e.substr(b + 1, end - b - 1));
    std::string item;
    while (std::getline(ss, item, ','))
      if (item.find_first_not_of(' ') != std::string::npos) out.push_back(std::stoll(item));
    return out;
  }
  std::string bytes_, header_;
  size_t data_ = 0;
};

// ---- 1 + 2: golden cases ----------------------------------------------------------------------

struct GroupWeights {  // owns one group's parameters and zeroed gradient buffers
  std::string prefix;
  Tensor w1, w3, w2;
  std::vector<float> g1, g3, g2;
  ExpertGroup view(bool swiglu) {
    g1.assign(w1.f.size(), 0.0f);
    g2.assign(w2.f.size(), 0.0f);
    g3.assign(swiglu ? w3.f.size() : 0, 0.0f);
    return ExpertGroup{int(w1.dim(0)), int(w1.dim(1)), w1.f.data(), swiglu ? w3.f.data() : nullptr,
                       w2.f.data(), g1.data(), swiglu ? g3.data() : nullptr, g2.data()};
  }
};

static GroupWeights loadGroup(const Safetensors& st, const std::string& prefix, bool swiglu) {
  GroupWeights g;
  g.prefix = prefix;
  g.w1 = st.get("param." + prefix + ".w1");
  g.w2 = st.get("param." + prefix + ".w2");
  if (swiglu) g.w3 = st.get("param." + prefix + ".w3");
  return g;
}

static void checkGroupGrads(const Safetensors& st, const std::string& caseName,
                            const GroupWeights& g, bool swiglu) {
  const double tol = 1e-5;
  const std::string base = "expect.grad." + g.prefix;
  double e = relL2(g.g1, st.get(base + ".w1").f);
  report(e <= tol, caseName + ": grad " + g.prefix + ".w1", e, tol);
  e = relL2(g.g2, st.get(base + ".w2").f);
  report(e <= tol, caseName + ": grad " + g.prefix + ".w2", e, tol);
  if (swiglu) {
    e = relL2(g.g3, st.get(base + ".w3").f);
    report(e <= tol, caseName + ": grad " + g.prefix + ".w3", e, tol);
  }
}

static void goldenCase(const std::string& dir, const std::string& name, Activation act,
                       const std::vector<std::string>& groupNames) {
  const Safetensors st(dir + "/" + name + ".safetensors");
  const bool swiglu = act == Activation::Swiglu;
  const Tensor x = st.get("input.x"), dy = st.get("input.dy");
  const Tensor idx = st.get("expect.indices"), wts = st.get("expect.weights"),
               keep = st.get("expect.keep");
  const int T = int(x.dim(0)), H = int(x.dim(1)), k = int(idx.dim(1));

  std::vector<GroupWeights> groups;
  for (const std::string& g : groupNames) groups.push_back(loadGroup(st, "experts." + g, swiglu));
  std::vector<ExpertGroup> views;
  for (GroupWeights& g : groups) views.push_back(g.view(swiglu));
  Experts routed(H, act, views);

  std::vector<int32_t> token, expert;
  std::vector<float> weight;
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j)
      if (keep.i[size_t(t) * k + j]) {
        token.push_back(t);
        expert.push_back(idx.i[size_t(t) * k + j]);
        weight.push_back(wts.f[size_t(t) * k + j]);
      }
  std::vector<float> y(size_t(T) * H, 0.0f);
  routed.forward(x.f.data(), T, int(token.size()), token.data(), expert.data(), weight.data(),
                 y.data());

  const bool hasShared = st.has("param.shared.w1");
  GroupWeights shared;
  std::vector<int32_t> sToken, sExpert;
  std::vector<float> sWeight;
  std::unique_ptr<Experts> sharedExperts;
  if (hasShared) {
    shared = loadGroup(st, "shared", swiglu);
    sharedExperts =
        std::make_unique<Experts>(H, act, std::vector<ExpertGroup>{shared.view(swiglu)});
    for (int s = 0; s < sharedExperts->experts(); ++s)
      for (int t = 0; t < T; ++t) {
        sToken.push_back(t);
        sExpert.push_back(s);
        sWeight.push_back(1.0f);
      }
    sharedExperts->forward(x.f.data(), T, int(sToken.size()), sToken.data(), sExpert.data(),
                           sWeight.data(), y.data());
  }
  const double tol = 1e-5;
  double e = relL2(y, st.get("expect.y").f);
  report(e <= tol, name + ": y (" + std::to_string(token.size()) + " assignments" +
                       (hasShared ? " + shared" : "") + ")",
         e, tol);

  std::vector<float> dx(size_t(T) * H, 0.0f), dWeight(token.size());
  routed.backward(dy.f.data(), dx.data(), dWeight.data());
  for (const GroupWeights& g : groups) checkGroupGrads(st, name, g, swiglu);
  if (hasShared) {
    sharedExperts->backward(dy.f.data(), dx.data(), nullptr);
    checkGroupGrads(st, name, shared, swiglu);
  }
}

// ---- 3: finite differences on a float64 reference -----------------------------------------

struct RefGroup {
  int count, ffn;
  std::vector<double> w1, w3, w2;
};

// X1–X2 in float64, objective Σ y·dy. Straight loops, independent of the library.
static double refObjective(Activation act, int H, const std::vector<RefGroup>& groups,
                           const std::vector<double>& x, const std::vector<int32_t>& token,
                           const std::vector<int32_t>& expert, const std::vector<double>& weight,
                           const std::vector<double>& dy, std::vector<double>* y = nullptr) {
  double obj = 0;
  for (size_t a = 0; a < token.size(); ++a) {
    int g = 0, e = expert[a];
    while (e >= groups[size_t(g)].count) e -= groups[size_t(g++)].count;
    const RefGroup& G = groups[size_t(g)];
    const double* xt = &x[size_t(token[a]) * H];
    std::vector<double> h(size_t(G.ffn));
    for (int f = 0; f < G.ffn; ++f) {
      double a1 = 0, a3 = 0;
      for (int i = 0; i < H; ++i) {
        a1 += G.w1[(size_t(e) * G.ffn + f) * H + i] * xt[i];
        if (act == Activation::Swiglu) a3 += G.w3[(size_t(e) * G.ffn + f) * H + i] * xt[i];
      }
      if (act == Activation::Swiglu) h[size_t(f)] = a1 / (1 + std::exp(-a1)) * a3;
      if (act == Activation::Gelu) h[size_t(f)] = 0.5 * a1 * (1 + std::erf(a1 / std::sqrt(2.0)));
      if (act == Activation::Relu) h[size_t(f)] = a1 > 0 ? a1 : 0;
    }
    for (int o = 0; o < H; ++o) {
      double out = 0;
      for (int f = 0; f < G.ffn; ++f) out += G.w2[(size_t(e) * H + o) * G.ffn + f] * h[size_t(f)];
      obj += weight[a] * out * dy[size_t(token[a]) * H + o];
      if (y) (*y)[size_t(token[a]) * H + o] += weight[a] * out;
    }
  }
  return obj;
}

static std::vector<float> toFloat(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// Central differences of the objective with respect to every entry of `param`.
static std::vector<double> numericGrad(std::vector<double>& param,
                                       const std::function<double()>& f) {
  const double h = 1e-6;
  std::vector<double> g(param.size());
  for (size_t i = 0; i < param.size(); ++i) {
    const double keep = param[i];
    param[i] = keep + h;
    const double up = f();
    param[i] = keep - h;
    const double down = f();
    param[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

static void finiteDifferences(Activation act, const char* actName) {
  std::mt19937 rng(1234 + int(act));
  std::normal_distribution<double> normal(0.0, 0.7);
  const int H = 5, T = 6;
  // Two groups of different ffn; expert 4 (the last of group 1) receives no token.
  std::vector<RefGroup> groups = {{2, 3, {}, {}, {}}, {3, 4, {}, {}, {}}};
  const bool swiglu = act == Activation::Swiglu;
  for (RefGroup& g : groups) {
    for (int i = 0; i < g.count * g.ffn * H; ++i) g.w1.push_back(normal(rng));
    if (swiglu)
      for (int i = 0; i < g.count * g.ffn * H; ++i) g.w3.push_back(normal(rng));
    for (int i = 0; i < g.count * H * g.ffn; ++i) g.w2.push_back(normal(rng));
  }
  std::vector<double> x, dy;
  for (int i = 0; i < T * H; ++i) x.push_back(normal(rng));
  for (int i = 0; i < T * H; ++i) dy.push_back(normal(rng));
  // Token 5 is dropped (no assignment), token 0 goes to three experts, expert 4 gets nothing.
  const std::vector<int32_t> token = {0, 0, 1, 2, 2, 3, 4, 0, 1, 3};
  const std::vector<int32_t> expert = {3, 1, 0, 2, 0, 3, 1, 0, 2, 1};
  std::vector<double> weight;
  for (size_t a = 0; a < token.size(); ++a) weight.push_back(0.2 + 0.6 * (a % 3) / 2.0);
  const int n = int(token.size());

  // Library, fp32.
  std::vector<std::vector<float>> w1f, w3f, w2f, g1(2), g3(2), g2(2);
  std::vector<ExpertGroup> views;
  for (size_t g = 0; g < 2; ++g) {
    w1f.push_back(toFloat(groups[g].w1));
    w3f.push_back(toFloat(groups[g].w3));
    w2f.push_back(toFloat(groups[g].w2));
    g1[g].assign(w1f[g].size(), 0.0f);
    g3[g].assign(w3f[g].size(), 0.0f);
    g2[g].assign(w2f[g].size(), 0.0f);
  }
  for (size_t g = 0; g < 2; ++g)
    views.push_back({groups[g].count, groups[g].ffn, w1f[g].data(),
                     swiglu ? w3f[g].data() : nullptr, w2f[g].data(), g1[g].data(),
                     swiglu ? g3[g].data() : nullptr, g2[g].data()});
  Experts ex(H, act, views);
  const std::vector<float> xf = toFloat(x), dyf = toFloat(dy), wf = toFloat(weight);
  std::vector<float> y(size_t(T) * H, 0.5f), dx(size_t(T) * H, 0.25f), dW(size_t(n), 0.0f);
  ex.forward(xf.data(), T, n, token.data(), expert.data(), wf.data(), y.data());
  ex.backward(dyf.data(), dx.data(), dW.data());
  for (float& v : y) v -= 0.5f;   // y and dx were added to: remove the starting values
  for (float& v : dx) v -= 0.25f;

  std::vector<double> yRef(size_t(T) * H, 0.0);
  auto obj = [&]() { return refObjective(act, H, groups, x, token, expert, weight, dy); };
  refObjective(act, H, groups, x, token, expert, weight, dy, &yRef);
  const std::string tag = std::string("finite differences, ") + actName + ": ";
  double e = relL2(y, yRef);
  report(e <= 1e-5, tag + "y vs float64 reference", e, 1e-5);
  const double tol = 1e-4;
  e = relL2(dx, numericGrad(x, obj));
  report(e <= tol, tag + "dx", e, tol);
  e = relL2(dW, numericGrad(weight, obj));
  report(e <= tol, tag + "dWeight", e, tol);
  for (size_t g = 0; g < 2; ++g) {
    const std::string gname = tag + "group " + std::to_string(g) + " ";
    e = relL2(g1[g], numericGrad(groups[g].w1, obj));
    report(e <= tol, gname + "w1", e, tol);
    e = relL2(g2[g], numericGrad(groups[g].w2, obj));
    report(e <= tol, gname + "w2", e, tol);
    if (swiglu) {
      e = relL2(g3[g], numericGrad(groups[g].w3, obj));
      report(e <= tol, gname + "w3", e, tol);
    }
  }
  // Expert 4 got no token: its slices of the group-1 grads stay exactly zero.
  bool zero = true;
  const int F1 = groups[1].ffn;
  for (int i = 2 * F1 * H; i < 3 * F1 * H; ++i) zero = zero && g1[1][size_t(i)] == 0.0f;
  expect(zero, tag + "an expert with no tokens gets a zero gradient");
  expect(ex.flops(4) == 0 && ex.flops(0) == 2 * 3 * int64_t(H) * 3 * (swiglu ? 3 : 2),
         tag + "flops per expert = 2·rows·H·F·matmuls");
}

// ---- 4: properties, edge cases, references -------------------------------------------------

template <class F>
static bool throwsKind(F f, ErrorKind kind, const char* needle) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind() == kind && std::string(e.what()).find(needle) != std::string::npos;
  }
  return false;
}

static void dispatchProperties() {
  std::mt19937 rng(7);
  const int T = 37, H = 9, E = 5;
  std::vector<float> x(size_t(T) * H);
  for (float& v : x) v = float(rng() % 1000) / 100.0f - 5.0f;
  // Each token once, to a random expert: permute → unpermute (weights 1) is the identity.
  std::vector<int32_t> token(T), expert(T);
  for (int t = 0; t < T; ++t) {
    token[size_t(t)] = T - 1 - t;  // assignments not in token order: the plan must restore it
    expert[size_t(t)] = int32_t(rng() % (E - 1));  // expert E-1 receives nothing
  }
  const PermutationPlan p = planPermutation(T, E, T, token.data(), expert.data());
  std::vector<float> xp(size_t(T) * H), back(size_t(T) * H, 0.0f);
  permuteRows(x.data(), T, H, T, p.rowToken.data(), xp.data());
  unpermuteRows(xp.data(), T, H, p.rowToken.data(), nullptr, T, back.data());
  expect(back == x, "permute → unpermute with weights 1 is the identity");
  bool sorted = p.counts[E - 1] == 0 && p.offsets[E] == T;
  for (int r = 1; r < T; ++r) {
    const int32_t ea = expert[size_t(p.rowAssignment[size_t(r - 1)])];
    const int32_t eb = expert[size_t(p.rowAssignment[size_t(r)])];
    sorted = sorted && (ea < eb || (ea == eb && p.rowToken[size_t(r - 1)] < p.rowToken[size_t(r)]));
  }
  expect(sorted, "rows sorted by expert, stable in token order; an empty expert has 0 rows");

  // Top-3 with weights summing to 1 recombines to x (up to rounding).
  std::vector<int32_t> t3, e3;
  std::vector<float> w3;
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < 3; ++j) {
      t3.push_back(t);
      e3.push_back((t + j) % E);
      w3.push_back(j == 0 ? 0.5f : 0.25f);
    }
  const PermutationPlan p3 = planPermutation(T, E, 3 * T, t3.data(), e3.data());
  std::vector<float> xp3(size_t(3 * T) * H), rw(size_t(3 * T)), y3(size_t(T) * H, 0.0f);
  for (int r = 0; r < 3 * T; ++r) rw[size_t(r)] = w3[size_t(p3.rowAssignment[size_t(r)])];
  permuteRows(x.data(), T, H, 3 * T, p3.rowToken.data(), xp3.data());
  unpermuteRows(xp3.data(), 3 * T, H, p3.rowToken.data(), rw.data(), T, y3.data());
  const double e = relL2(y3, x);
  report(e <= 1e-7, "top-3 permute → weighted unpermute (Σw = 1) recombines x", e, 1e-7);

  const std::vector<int32_t> tokenT = {T}, expertMinus1 = {-1};
  expect(throwsKind([&] { planPermutation(T, E, 1, tokenT.data(), expert.data()); },
                    ErrorKind::Argument, "token[0]"),
         "permute: token out of range throws Argument naming token[0]");
  expect(throwsKind([&] { planPermutation(T, E, 1, token.data(), expertMinus1.data()); },
                    ErrorKind::Argument, "expert[0]"),
         "permute: expert out of range throws Argument naming expert[0]");
}

static void groupedGemmReference() {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  const int G = 4, N = 7, K = 13;
  const std::vector<int32_t> rows = {3, 0, 5, 1};
  const int M = 9;
  std::vector<float> a(size_t(M) * K), w(size_t(G) * N * K), dOut(size_t(M) * N);
  for (float& v : a) v = normal(rng);
  for (float& v : w) v = normal(rng);
  for (float& v : dOut) v = normal(rng);
  std::vector<float> out(size_t(M) * N), dA(size_t(M) * K), dW(w.size(), 1.0f);
  groupedGemmNT(a.data(), w.data(), rows.data(), G, M, N, K, out.data());
  groupedGemmNTBackward(dOut.data(), a.data(), w.data(), rows.data(), G, M, N, K, dA.data(),
                        dW.data());
  std::vector<double> outRef(out.size()), dARef(dA.size()), dWRef(dW.size(), 1.0);
  for (int m = 0, g = 0, end = rows[0]; m < M; ++m) {
    while (m >= end) end += rows[size_t(++g)];
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k) {
        const double wv = w[(size_t(g) * N + n) * K + k];
        outRef[size_t(m) * N + n] += double(a[size_t(m) * K + k]) * wv;
        dARef[size_t(m) * K + k] += double(dOut[size_t(m) * N + n]) * wv;
        dWRef[(size_t(g) * N + n) * K + k] +=
            double(dOut[size_t(m) * N + n]) * a[size_t(m) * K + k];
      }
  }
  double e = relL2(out, outRef);
  report(e <= 1e-6, "groupedGemmNT vs float64 (an empty group)", e, 1e-6);
  e = relL2(dA, dARef);
  report(e <= 1e-6, "groupedGemmNT backward dA", e, 1e-6);
  e = relL2(dW, dWRef);
  report(e <= 1e-6, "groupedGemmNT backward dW (added to)", e, 1e-6);
  const std::vector<int32_t> bad = {3, 0, 5, 2};
  expect(throwsKind([&] { groupedGemmNT(a.data(), w.data(), bad.data(), G, M, N, K, out.data()); },
                    ErrorKind::Shape, "groupRows must sum"),
         "groupedGemm: row counts not summing to M throws Shape naming groupRows");
  const std::vector<int32_t> neg = {3, -1, 6, 1};
  expect(throwsKind([&] { groupedGemmNT(a.data(), w.data(), neg.data(), G, M, N, K, out.data()); },
                    ErrorKind::Argument, "groupRows[1]"),
         "groupedGemm: a negative row count throws Argument naming groupRows[1]");
}

static void expertsEdgeCases() {
  const int H = 4, F = 3, E = 2;
  std::vector<float> w1(size_t(E) * F * H, 0.1f), w3(w1.size(), -0.2f), w2(size_t(E) * H * F, 0.3f);
  std::vector<float> g1(w1.size()), g3(w3.size()), g2(w2.size());
  Experts ex(H, Activation::Swiglu,
             {{E, F, w1.data(), w3.data(), w2.data(), g1.data(), g3.data(), g2.data()}});
  const std::vector<float> x = {1, 2, 3, 4}, dy = {1, 1, 1, 1};
  std::vector<float> y = {5, 6, 7, 8}, dx = {0, 0, 0, 0};
  // n = 0: every token dropped.
  ex.forward(x.data(), 1, 0, nullptr, nullptr, nullptr, y.data());
  ex.backward(dy.data(), dx.data(), nullptr);
  bool untouched = y == std::vector<float>{5, 6, 7, 8} && dx == std::vector<float>{0, 0, 0, 0};
  for (float g : g1) untouched = untouched && g == 0.0f;
  expect(untouched && ex.flops(0) == 0, "n = 0 leaves y, dx and the grads alone");
  // T = 1, one assignment: y = w · E(x).
  const int32_t tok = 0, exp = 1;
  const float wt = 0.5f;
  y = {0, 0, 0, 0};
  ex.forward(x.data(), 1, 1, &tok, &exp, &wt, y.data());
  const double a = 0.1 * 10, a3 = -0.2 * 10, h = a / (1 + std::exp(-a)) * a3;
  const double want = 0.5 * 0.3 * 3 * h;
  expect(std::fabs(y[0] - want) < 1e-6 && y[3] == y[0], "T = 1: y = w·E(x)");
  float dWeight = 0;
  ex.backward(dy.data(), dx.data(), &dWeight);
  expect(std::fabs(dWeight - 4 * want / 0.5) < 1e-5, "T = 1: dWeight = dy·E(x)");

  const int32_t two = 2, one = 1;
  expect(throwsKind([&] { ex.forward(x.data(), 1, 1, &tok, &two, &wt, y.data()); },
                    ErrorKind::Argument, "expert[0] must be in [0, E = 2)"),
         "Experts: expert out of range throws Argument");
  expect(throwsKind([&] { ex.forward(x.data(), 1, 1, &one, &exp, &wt, y.data()); },
                    ErrorKind::Argument, "token[0] must be in [0, T = 1)"),
         "Experts: token out of range throws Argument");
  expect(throwsKind([&] { ex.backward(dy.data(), dx.data(), nullptr); }, ErrorKind::Argument,
                    "no forward"),
         "Experts: backward after a failed forward throws Argument");
  const ExpertGroup noW3{E, F, w1.data(), nullptr, w2.data()};
  expect(throwsKind([&] { Experts(H, Activation::Swiglu, {noW3}); },
                    ErrorKind::Argument, "groups[0].w3"),
         "Experts: swiglu without w3 throws Argument naming groups[0].w3");
  expect(throwsKind([&] { Experts(H, Activation::Relu, {{0, F, w1.data(), nullptr, w2.data()}}); },
                    ErrorKind::Shape, "groups[0].count"),
         "Experts: an empty group throws Shape naming groups[0].count");
  expect(throwsKind([&] { ex.flops(2); }, ErrorKind::Argument, "expert must be in"),
         "Experts: flops of an unknown expert throws Argument");
}

static void adamwReference() {
  const AdamWConfig c{0.01, 0.9, 0.99, 1e-8, 0.1};
  std::vector<float> p = {1.0f, -2.0f, 0.5f, 0.0f}, m(4, 0.0f), v(4, 0.0f);
  std::vector<double> pd(p.begin(), p.end()), md(4, 0.0), vd(4, 0.0);
  for (int t = 1; t <= 5; ++t) {
    const std::vector<float> g = {0.1f * t, -0.3f, 2.0f / t, 0.0f};
    adamwStep(p.data(), g.data(), m.data(), v.data(), 4, c, t);
    for (size_t i = 0; i < 4; ++i) {  // torch.optim.AdamW, single tensor, float64
      pd[i] *= 1 - c.lr * c.weightDecay;
      md[i] = c.beta1 * md[i] + (1 - c.beta1) * g[i];
      vd[i] = c.beta2 * vd[i] + (1 - c.beta2) * double(g[i]) * g[i];
      const double bc1 = 1 - std::pow(c.beta1, t), bc2 = 1 - std::pow(c.beta2, t);
      pd[i] -= c.lr / bc1 * md[i] / (std::sqrt(vd[i]) / std::sqrt(bc2) + c.eps);
    }
  }
  const double e = relL2(p, pd);
  report(e <= 1e-6, "AdamW: 5 steps vs the torch.optim.AdamW formula in float64", e, 1e-6);
  expect(throwsKind([&] { adamwStep(p.data(), p.data(), m.data(), v.data(), 4, {0.01, 1.0}, 1); },
                    ErrorKind::Argument, "beta1"),
         "AdamW: beta1 = 1 throws Argument naming beta1");
  expect(throwsKind([&] { adamwStep(p.data(), p.data(), m.data(), v.data(), 4, c, 0); },
                    ErrorKind::Argument, "step"),
         "AdamW: step 0 throws Argument naming step");
}

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/work/shared/golden";
  try {
    goldenCase(dir, "softmax_top2", Activation::Swiglu, {"e"});
    goldenCase(dir, "switch_gelu_top1_orth", Activation::Gelu, {"e"});
    goldenCase(dir, "sequence_balance", Activation::Relu, {"e"});
    goldenCase(dir, "hetero_modality_shared", Activation::Swiglu, {"text", "vision"});
    // Beyond the brief: cases whose kept slots include drops (C2–C5, C4) and k = 4 (R5).
    for (const char* name : {"capacity_position", "capacity_score", "capacity_reroute",
                             "affinity_locmoe", "sigmoid_grouplimited_bias"})
      goldenCase(dir, name, Activation::Swiglu, {"e"});
    finiteDifferences(Activation::Swiglu, "swiglu");
    finiteDifferences(Activation::Gelu, "gelu");
    finiteDifferences(Activation::Relu, "relu");
    dispatchProperties();
    groupedGemmReference();
    expertsEdgeCases();
    adamwReference();
  } catch (const std::exception& e) {
    std::printf("FAIL  unexpected exception: %s\n", e.what());
    return 1;
  }
  std::printf("%s (%d failure%s)\n", failures ? "FAILED" : "PASSED", failures,
              failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}
