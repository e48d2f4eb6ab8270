// Dev harness for the CPU router and losses (not part of the build).
//
//   python3 /tmp/rc/dump.py      # golden cases → /tmp/rc/cases/<case>/{spec,tensors}.txt + *.bin
//   g++ -std=c++17 -O2 -Wall -Wextra -Inative test/native/router_check.cc native/cpu/router.cc
//       native/cpu/losses.cc -o /tmp/router_check
//   /tmp/router_check /tmp/rc/cases    # first run writes assign*.bin
//   python3 /tmp/rc/gold_grad.py       # → daw*.bin, and checks expert-choice y
//   /tmp/router_check /tmp/rc/cases    # now also checks the router.weight gradient
//
// Part 1 replays every dumped golden case through Router::forward/endStep and compares indices,
// keep, counts, accepted exactly and weights, losses, aux, biasAfterUpdate, loadAfter within 1e-5
// relative (golden values are float64 results rounded to f32, so ~6e-8 is the floor). Each forward
// writes its assignments to assign<.mb>.bin; /tmp/rc/gold_grad.py turns them into
// dObjective/dassignWeight = dy_t·E_e(x_t) (daw<.mb>.bin) and checks expert-choice y, so a second
// run also checks Router::backward against expect.grad.router.weight (router.weight feeds nothing
// but the router): relative norm error ≤ 1e-5.
// Part 2 checks Router::backward against central finite differences of
// J = Σ_a c_a·assignWeight_a + aux on small shapes, one loss (or the weights path) at a time.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/errors.h"
#include "cpu/router.h"

using moekit::cpu::Router;
using moekit::cpu::RouterParams;
using moekit::cpu::RouterSpec;
using moekit::cpu::Routing;

namespace {

int failures = 0;

// ---- golden replay ---------------------------------------------------------------------------

struct Case {
  std::map<std::string, std::string> spec;
  std::map<std::string, std::vector<float>> f32;
  std::map<std::string, std::vector<int32_t>> i32;
};

Case readCase(const std::string& dir) {
  Case c;
  std::ifstream spec(dir + "/spec.txt");
  for (std::string line; std::getline(spec, line);) {
    const size_t sp = line.find(' ');
    c.spec[line.substr(0, sp)] = line.substr(sp + 1);
  }
  std::ifstream list(dir + "/tensors.txt");
  std::string name, dtype;
  size_t n;
  while (list >> name >> dtype >> n) {
    std::ifstream bin(dir + "/" + name + ".bin", std::ios::binary);
    if (dtype == "f32") {
      auto& v = c.f32[name];
      v.resize(n);
      bin.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * 4));
    } else {
      auto& v = c.i32[name];
      v.resize(n);
      bin.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * 4));
    }
  }
  return c;
}

std::vector<int> ints(const std::string& s) {
  std::istringstream in(s);
  std::vector<int> v;
  for (int x; in >> x;) v.push_back(x);
  return v;
}

RouterSpec specOf(const Case& c) {
  auto get = [&](const char* k) { return c.spec.at(k); };
  auto num = [&](const char* k) { return std::stod(get(k)); };
  RouterSpec s;
  s.hidden = int(num("hidden"));
  s.groupSizes = ints(get("groupSizes"));
  s.groupModality = ints(get("groupModality"));
  const std::string type = get("type");
  s.type = type == "affinity"        ? RouterSpec::Type::Affinity
           : type == "expert-choice" ? RouterSpec::Type::ExpertChoice
           : type == "sampled"       ? RouterSpec::Type::Sampled
                                     : RouterSpec::Type::TopK;
  s.topK = int(num("topK"));
  s.score = get("score") == "sigmoid" ? RouterSpec::Score::Sigmoid : RouterSpec::Score::Softmax;
  s.normalize = num("normalize") != 0;
  s.scale = num("scale");
  s.limitGroups = int(num("limitGroups"));
  s.limitTopGroups = int(num("limitTopGroups"));
  s.useBias = num("useBias") != 0;
  s.biasUpdateRate = num("biasUpdateRate");
  s.temperature = num("temperature");
  s.minAffinity = num("minAffinity");
  s.loadPenalty = num("loadPenalty");
  s.loadDecay = num("loadDecay");
  s.capacityFactor = num("capacityFactor");
  const std::string policy = get("policy");
  s.policy = policy == "score"     ? RouterSpec::Policy::Score
             : policy == "reroute" ? RouterSpec::Policy::Reroute
                                   : RouterSpec::Policy::Position;
  s.balanceCoeff = num("balanceCoeff");
  const std::string scope = get("scope");
  s.scope = scope == "sequence" ? RouterSpec::Scope::Sequence
            : scope == "global" ? RouterSpec::Scope::Global
                                : RouterSpec::Scope::Micro;
  s.zCoeff = num("zCoeff");
  s.orthCoeff = num("orthCoeff");
  const std::string orth = get("orthMode");
  s.orthMode = orth == "perGroup"     ? RouterSpec::Orth::PerGroup
               : orth == "crossGroup" ? RouterSpec::Orth::CrossGroup
                                      : RouterSpec::Orth::All;
  s.seed = uint64_t(num("seed"));
  return s;
}

struct Compare {
  std::string label;
  int checks = 0, bad = 0;
  double worst = 0;      // worst relative error of the element-wise checks
  double gradWorst = 0;  // worst relative norm error of the gradient checks
  void exact(const std::string& what, const std::vector<int32_t>& got, const std::vector<int32_t>* want) {
    if (!want) return;
    ++checks;
    if (got != *want) {
      ++bad;
      size_t diff = 0;
      for (size_t i = 0; i < std::min(got.size(), want->size()); ++i) diff += got[i] != (*want)[i];
      std::printf("  MISMATCH %s %s: %zu of %zu differ (sizes %zu/%zu)\n", label.c_str(), what.c_str(), diff,
                  want->size(), got.size(), want->size());
    }
  }
  // Whole-tensor check for gradients: ‖got − want‖ / ‖want‖ ≤ 1e-5.
  void closeNorm(const std::string& what, const std::vector<float>& got, const std::vector<float>& want) {
    ++checks;
    double d2 = 0, w2 = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      d2 += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
      w2 += double(want[i]) * want[i];
    }
    const double rel = std::sqrt(d2 / std::max(w2, 1e-300));
    gradWorst = std::max(gradWorst, rel);
    if (!(rel <= 1e-5)) {
      ++bad;
      std::printf("  MISMATCH %s %s: relative norm error %.3g\n", label.c_str(), what.c_str(), rel);
    }
  }
  void close(const std::string& what, const std::vector<double>& got, const std::vector<float>* want,
             double tol = 1e-5) {
    if (!want) return;
    ++checks;
    double err = got.size() == want->size() ? 0 : INFINITY;
    for (size_t i = 0; i < std::min(got.size(), want->size()); ++i) {
      const double w = (*want)[i], e = std::fabs(got[i] - w) / std::max(std::fabs(w), 1e-12);
      if (!(std::fabs(got[i] - w) <= tol * std::fabs(w) + 1e-12)) err = std::max(err, e);
      worst = std::max(worst, std::fabs(got[i] - w) <= 1e-12 ? 0.0 : e);
    }
    if (err > 0) {
      ++bad;
      std::printf("  MISMATCH %s %s: worst relative error %.3g\n", label.c_str(), what.c_str(), err);
    }
  }
};

template <class T>
const std::vector<T>* find(const std::map<std::string, std::vector<T>>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? nullptr : &it->second;
}

void replay(const std::string& root, const std::string& name) {
  const Case c = readCase(root + "/" + name);
  const RouterSpec spec = specOf(c);
  Router router(spec);
  const int E = router.experts();
  const int mbs = std::stoi(c.spec.at("microBatches"));
  std::vector<float> weight = c.f32.at("param.router.weight");
  std::vector<float> bias = c.f32.count("param.router.bias") ? c.f32.at("param.router.bias") : std::vector<float>(E, 0);
  std::vector<float> load(E, 1.0f / E);
  Compare cmp{name};
  for (int mb = 0; mb < mbs; ++mb) {
    const std::string sfx = mbs > 1 ? "." + std::to_string(mb) : "";
    const std::vector<float>& x = c.f32.at("input.x" + sfx);
    const int T = int(x.size()) / spec.hidden;
    const std::vector<int32_t>* modality = find(c.i32, "input.modality" + sfx);
    const std::vector<int32_t>* seq = find(c.i32, "input.seqLens" + sfx);
    std::vector<int> seqLens = seq ? std::vector<int>(seq->begin(), seq->end()) : std::vector<int>();
    Routing out;
    router.forward(x.data(), T, modality ? modality->data() : nullptr, seqLens,
                   RouterParams{weight.data(), bias.data(), load.data()}, out);
    cmp.exact("indices" + sfx, out.indices, find(c.i32, "expect.indices" + sfx));
    cmp.exact("keep" + sfx, out.keep, find(c.i32, "expect.keep" + sfx));
    cmp.exact("counts" + sfx, out.counts, find(c.i32, "expect.counts" + sfx));
    cmp.exact("accepted" + sfx, out.accepted, find(c.i32, "expect.accepted" + sfx));
    cmp.close("weights" + sfx, std::vector<double>(out.weights.begin(), out.weights.end()),
              find(c.f32, "expect.weights" + sfx));
    cmp.close("loss.balance" + sfx, {out.balance}, find(c.f32, "expect.loss.balance" + sfx));
    cmp.close("loss.z" + sfx, {out.z}, find(c.f32, "expect.loss.z" + sfx));
    cmp.close("loss.orthogonality" + sfx, {out.orthogonality}, find(c.f32, "expect.loss.orthogonality" + sfx));
    cmp.close("aux" + sfx, {out.aux}, find(c.f32, "expect.aux" + sfx));
    // Assignments out (token, expert pairs) for gold_grad.py; its dObjective/dassignWeight back in.
    const std::string dir = root + "/" + name + "/";
    std::vector<int32_t> pairs;
    for (size_t a = 0; a < out.assignToken.size(); ++a) {
      pairs.push_back(out.assignToken[a]);
      pairs.push_back(out.assignExpert[a]);
    }
    std::ofstream(dir + "assign" + sfx + ".bin", std::ios::binary)
        .write(reinterpret_cast<const char*>(pairs.data()), std::streamsize(pairs.size() * 4));
    std::ifstream dawFile(dir + "daw" + sfx + ".bin", std::ios::binary);
    const std::vector<float>* wantGrad = find(c.f32, "expect.grad.router.weight" + sfx);
    if (dawFile && wantGrad) {
      std::vector<float> daw(out.assignToken.size()), dx(x.size(), 0.0f), dw(weight.size(), 0.0f);
      dawFile.read(reinterpret_cast<char*>(daw.data()), std::streamsize(daw.size() * 4));
      if (dawFile.gcount() == std::streamsize(daw.size() * 4)) {
        router.backward(daw.data(), dx.data(), dw.data());
        cmp.closeNorm("grad.router.weight" + sfx, dw, *wantGrad);
      }
    }
  }
  router.endStep(bias.data());
  cmp.close("biasAfterUpdate", std::vector<double>(bias.begin(), bias.end()), find(c.f32, "expect.biasAfterUpdate"));
  cmp.close("loadAfter", std::vector<double>(load.begin(), load.end()), find(c.f32, "expect.loadAfter"));
  std::printf("%-28s %2d checks, %d mismatched, worst rel err %.2e, router grad rel err %.2e\n", name.c_str(),
              cmp.checks, cmp.bad, cmp.worst, cmp.gradWorst);
  failures += cmp.bad;
}

// ---- finite differences ----------------------------------------------------------------------

struct FdProblem {
  std::string name;
  RouterSpec spec;
  int T;
  std::vector<int32_t> modality;  // empty = none
  std::vector<int> seqLens;
  bool weightsPath;          // objective includes Σ c_a·assignWeight_a
  int warmup = 0;            // forwards on other data before the checked one (L2 window)
};

struct Eval {
  double J;
  Routing r;
};

Eval evaluate(const FdProblem& pb, const std::vector<float>& x, const std::vector<float>& w,
              const std::vector<float>& warmX, const std::vector<double>& c, Router* keep = nullptr) {
  Router local(pb.spec);
  Router& router = keep ? *keep : local;
  const int E = router.experts();
  std::vector<float> bias(E, 0.01f), load(E, 1.0f / E);
  for (int e = 0; e < E; ++e) load[e] = (1.0f + e) / (E * (E + 1) / 2.0f);
  RouterParams p{w.data(), bias.data(), load.data()};
  Routing out;
  for (int i = 0; i < pb.warmup; ++i)
    router.forward(warmX.data(), pb.T, pb.modality.empty() ? nullptr : pb.modality.data(), pb.seqLens, p, out);
  router.forward(x.data(), pb.T, pb.modality.empty() ? nullptr : pb.modality.data(), pb.seqLens, p, out);
  double J = out.aux;
  if (pb.weightsPath)
    for (size_t a = 0; a < out.assignWeight.size() && a < c.size(); ++a) J += c[a] * out.assignWeight[a];
  return {J, out};
}

bool sameDecisions(const Routing& a, const Routing& b) {
  return a.assignToken == b.assignToken && a.assignExpert == b.assignExpert && a.indices == b.indices &&
         a.keep == b.keep && a.counts == b.counts;
}

void fdCheck(const FdProblem& pb) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int H = pb.spec.hidden;
  int E = 0;
  for (int g : pb.spec.groupSizes) E += g;
  std::vector<float> x(size_t(pb.T) * H), w(size_t(E) * H), warmX(size_t(pb.T) * H);
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = 0.7f * nd(rng);
  for (auto& v : warmX) v = nd(rng);
  // Analytic: one router, warm-up then the checked forward, then backward with c.
  Router router(pb.spec);
  Eval base = evaluate(pb, x, w, warmX, {}, &router);
  std::vector<double> c(base.r.assignWeight.size());
  std::vector<float> cf(c.size());
  for (size_t a = 0; a < c.size(); ++a) {
    c[a] = pb.weightsPath ? nd(rng) : 0.0;
    cf[a] = float(c[a]);
  }
  std::vector<float> dx(x.size(), 0.0f), dw(w.size(), 0.0f);
  router.backward(cf.data(), dx.data(), dw.data());
  // Numeric: central differences over every element of x and w.
  double num2 = 0, err2 = 0, maxAbs = 0;
  int skipped = 0;
  auto probe = [&](std::vector<float>& v, size_t i, float analytic) {
    const float orig = v[i];
    const float eps = 2e-3f * std::max(1.0f, std::fabs(orig));
    v[i] = orig + eps;
    const double hp = double(v[i]) - orig;
    Eval plus = evaluate(pb, x, w, warmX, c);
    v[i] = orig - eps;
    const double hm = orig - double(v[i]);
    Eval minus = evaluate(pb, x, w, warmX, c);
    v[i] = orig;
    if (!sameDecisions(plus.r, base.r) || !sameDecisions(minus.r, base.r)) {
      ++skipped;
      return;
    }
    const double numeric = (plus.J - minus.J) / (hp + hm);
    num2 += numeric * numeric;
    err2 += (numeric - analytic) * (numeric - analytic);
    maxAbs = std::max(maxAbs, std::fabs(numeric - analytic));
  };
  for (size_t i = 0; i < x.size(); ++i) probe(x, i, dx[i]);
  for (size_t i = 0; i < w.size(); ++i) probe(w, i, dw[i]);
  const double rel = std::sqrt(err2) / std::max(std::sqrt(num2), 1e-30);
  const bool ok = rel < 2e-3 && num2 > 0;
  int moved = 0;  // experts whose accepted count differs from their R6 count (drops, reroutes)
  for (size_t e = 0; e < base.r.counts.size(); ++e) moved += base.r.counts[e] != base.r.accepted[e];
  std::printf("fd %-40s aux=%-9.4g assignments %2zu/%2zu (%d experts changed) |grad|=%-8.3g rel err %.2e"
              "  skipped %d  %s\n",
              pb.name.c_str(), base.r.aux, base.r.assignToken.size(), base.r.indices.size(), moved,
              std::sqrt(num2), rel, skipped, ok ? "ok" : "FAIL");
  if (!ok) ++failures;
}

RouterSpec smallSpec() {
  RouterSpec s;
  s.hidden = 5;
  s.groupSizes = {4, 4};
  s.topK = 2;
  return s;
}

void fdSuite() {
  std::vector<FdProblem> pbs;
  auto add = [&](const std::string& name, RouterSpec s, bool weightsPath) {
    pbs.push_back({name, s, 7, {}, {}, weightsPath});
    return &pbs.back();
  };
  const std::vector<int32_t> modality = {0, 1, 1, 0, 1, 0, 0};
  {  // L1 micro, softmax and sigmoid, alone.
    RouterSpec s = smallSpec();
    s.balanceCoeff = 0.3;
    add("L1 micro softmax", s, false);
    s.score = RouterSpec::Score::Sigmoid;
    add("L1 micro sigmoid", s, false);
    s.scope = RouterSpec::Scope::Sequence;
    add("L3 sequence sigmoid", s, false)->seqLens = {3, 4};
    s.score = RouterSpec::Score::Softmax;
    add("L3 sequence softmax", s, false)->seqLens = {2, 1, 4};
    s.scope = RouterSpec::Scope::Global;
    add("L2 global (after 2 warm-up forwards)", s, false)->warmup = 2;
    s.scope = RouterSpec::Scope::Micro;
    s.groupModality = {0, 1};
    add("L1 micro modality groups", s, false)->modality = modality;
    s.scope = RouterSpec::Scope::Global;
    FdProblem* p = add("L2 global modality groups", s, false);
    p->modality = modality;
    p->warmup = 1;
  }
  {  // L4 z alone.
    RouterSpec s = smallSpec();
    s.zCoeff = 0.05;
    add("L4 z", s, false);
    s.groupModality = {0, -1};
    add("L4 z modality", s, false)->modality = modality;
  }
  {  // L5 orthogonality alone.
    RouterSpec s = smallSpec();
    s.orthCoeff = 0.2;
    s.orthMode = RouterSpec::Orth::All;
    add("L5 orth all", s, false);
    s.orthMode = RouterSpec::Orth::PerGroup;
    add("L5 orth perGroup", s, false);
    s.orthMode = RouterSpec::Orth::CrossGroup;
    s.groupSizes = {3, 2, 3};
    add("L5 orth crossGroup (3 groups)", s, false);
  }
  {  // Weights path Σ c_a·assignWeight_a.
    RouterSpec s = smallSpec();
    add("R7 softmax", s, true);
    s.normalize = true;
    s.scale = 2.5;
    add("R7 softmax normalize scale", s, true);
    s.score = RouterSpec::Score::Sigmoid;
    s.useBias = true;
    s.limitGroups = 4;
    s.limitTopGroups = 2;
    add("R7 sigmoid normalize bias groupLimited", s, true);
    s = smallSpec();
    s.groupModality = {0, 1};
    s.normalize = true;
    add("R7 softmax modality", s, true)->modality = modality;
    s = smallSpec();
    s.capacityFactor = 0.6;
    s.normalize = true;
    s.policy = RouterSpec::Policy::Reroute;
    add("C5 reroute weights", s, true);
    s.policy = RouterSpec::Policy::Score;
    add("C3 score weights", s, true);
    s = smallSpec();
    s.type = RouterSpec::Type::Affinity;
    s.temperature = 0.3;
    s.normalize = true;
    add("R8 affinity weights", s, true);
    s.balanceCoeff = 0.2;
    s.zCoeff = 0.01;
    s.orthCoeff = 0.1;
    s.orthMode = RouterSpec::Orth::PerGroup;
    s.minAffinity = 0.0;
    add("R8 affinity weights+L1+L4+L5+C4", s, true);
    s = smallSpec();
    s.type = RouterSpec::Type::ExpertChoice;
    s.capacityFactor = 1.0;
    add("R9 expert-choice weights", s, true);
    s.zCoeff = 0.02;
    add("R9 expert-choice weights+L4", s, true);
    s = smallSpec();
    s.type = RouterSpec::Type::Sampled;
    s.normalize = true;
    s.seed = 99;
    s.balanceCoeff = 0.1;
    add("R10 sampled weights+L1", s, true);
    s = smallSpec();
    s.normalize = true;
    s.score = RouterSpec::Score::Sigmoid;
    s.balanceCoeff = 0.1;
    s.zCoeff = 0.01;
    s.orthCoeff = 0.05;
    add("all together sigmoid", s, true);
  }
  for (const auto& pb : pbs) fdCheck(pb);
}

// ---- argument checks -------------------------------------------------------------------------

void errorChecks() {
  auto expectThrow = [&](const char* what, auto fn) {
    try {
      fn();
      std::printf("err %-40s did NOT throw  FAIL\n", what);
      ++failures;
    } catch (const moekit::Error& e) {
      std::printf("err %-40s -> %s\n", what, e.what());
    }
  };
  RouterSpec s = smallSpec();
  std::vector<float> x(5 * 3, 0.5f), w(8 * 5, 0.1f), load(8, 0.125f);
  Routing out;
  expectThrow("topK > E", [&] { RouterSpec b = s; b.topK = 9; Router r(b); });
  expectThrow("groupLimited leaves < topK", [&] {
    RouterSpec b = s; b.limitGroups = 4; b.limitTopGroups = 1; b.topK = 3; Router r(b); });
  expectThrow("seqLens sum", [&] {
    RouterSpec b = s; b.balanceCoeff = 1; b.scope = RouterSpec::Scope::Sequence; Router r(b);
    r.forward(x.data(), 3, nullptr, {1, 1}, RouterParams{w.data(), nullptr, nullptr}, out); });
  expectThrow("seqLens missing", [&] {
    RouterSpec b = s; b.balanceCoeff = 1; b.scope = RouterSpec::Scope::Sequence; Router r(b);
    r.forward(x.data(), 3, nullptr, {}, RouterParams{w.data(), nullptr, nullptr}, out); });
  expectThrow("modality with too few experts", [&] {
    RouterSpec b = s; b.groupModality = {0, 1}; b.topK = 2; Router r(b);
    const int32_t m[3] = {0, 2, 1};
    r.forward(x.data(), 3, m, {}, RouterParams{w.data(), nullptr, nullptr}, out); });
  expectThrow("sampled without load", [&] {
    RouterSpec b = s; b.type = RouterSpec::Type::Sampled; Router r(b);
    r.forward(x.data(), 3, nullptr, {}, RouterParams{w.data(), nullptr, nullptr}, out); });
  expectThrow("backward before forward", [&] {
    Router r(s); std::vector<float> dx(15), dw(40); r.backward(nullptr, dx.data(), dw.data()); });
  // T = 0 is not an error.
  Router r(s);
  r.forward(nullptr, 0, nullptr, {}, RouterParams{w.data(), nullptr, load.data()}, out);
  std::printf("T=0 forward ok: %zu assignments, aux %g\n", out.assignToken.size(), out.aux);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : "/tmp/rc/cases";
  const char* cases[] = {"softmax_top2",          "sigmoid_grouplimited_bias", "capacity_position",
                         "capacity_score",        "capacity_reroute",          "hetero_modality_shared",
                         "switch_gelu_top1_orth", "sequence_balance",          "global_balance_window",
                         "affinity_locmoe",       "sampled_load_aware",        "expert_choice"};
  for (const char* c : cases) replay(root, c);
  fdSuite();
  errorChecks();
  std::printf(failures ? "FAILED (%d)\n" : "ALL OK\n", failures);
  return failures ? 1 : 0;
}
