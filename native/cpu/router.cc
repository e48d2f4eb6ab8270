#include "router.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "../core/capacity.h"
#include "../core/errors.h"
#include "../core/logit_grad.h"
#include "../core/losses.h"
#include "sgemm.h"
#include "thread_pool.h"

namespace moekit::cpu {

namespace {

// Tokens per parallel chunk of the row-wise loops (enough work to amortise a hand-off).
constexpr int64_t kTokenGrain = 32;

using routing::ScoreFn;

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

std::string str(int64_t v) { return std::to_string(v); }

// Ordering of the capacity and expert-choice rankings (C3, R9): core/capacity.h.
using capacity::ranksHigher;

}  // namespace

// ---- construction ------------------------------------------------------------------------------

Router::Router(RouterSpec spec)
    : spec_(std::move(spec)), layout_(checkRouterSpec(spec_)), window_(layout_) {
  E_ = layout_.E;
  H_ = layout_.H;
  G_ = layout_.G;
}

// ---- forward stages ----------------------------------------------------------------------------

// R2 mask, R1/R8 logits and R3 scores of every token.
void Router::computeLogitsAndScores(const float* x, const int32_t* modality) {
  const int T = T_;
  const bool affinity = spec_.type == RouterSpec::Type::Affinity;
  allowed_ = allowedMask(spec_, layout_, modality, T);
  logits_.assign(size_t(T) * E_, 0.0);
  s_.assign(size_t(T) * E_, 0.0);
  cos_.clear();
  if (affinity) {
    cos_.assign(size_t(T) * E_, 0.0);
    wNorm_.resize(E_);
    xNorm_.resize(T);
    for (int e = 0; e < E_; ++e) wNorm_[e] = routing::rowNorm(&w_[size_t(e) * H_], H_);
  }
  // Rows are independent: tokens in parallel, each row computed whole by one thread.
  parallelFor(0, T, kTokenGrain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* xt = x + size_t(t) * H_;
      double* l = &logits_[size_t(t) * E_];
      if (affinity) {
        xNorm_[t] = routing::rowNorm(xt, H_);
        routing::cosineLogitsRow(xt, w_.data(), wNorm_.data(), H_, E_, spec_.temperature,
                                 &cos_[size_t(t) * E_], l);
      } else {
        routing::linearLogitsRow(xt, w_.data(), H_, E_, l);
      }
      routing::scoresRow(l, allowedRow(int(t)), E_, scoreFn(), &s_[size_t(t) * E_]);
    }
  });
}

// R4/R10 keys, R5 group limiting and R6 top-k into selIdx_ (kept) and idx_ (capacity may move it).
void Router::selectTopK(int T, const RouterParams& p) {
  const bool sampled = spec_.type == RouterSpec::Type::Sampled;
  q_.assign(size_t(T) * E_, 0.0);
  selIdx_.assign(size_t(T) * k_, 0);
  std::vector<double> groupScore(std::max(spec_.limitGroups, 1));
  for (int t = 0; t < T; ++t) {
    const double* s = &s_[size_t(t) * E_];
    double* q = &q_[size_t(t) * E_];
    if (sampled)
      routing::sampledKeyRow(s, load_.data(), spec_.loadPenalty, allowedRow(t), E_, spec_.seed,
                             step_, t, q);
    else
      routing::biasKeyRow(s, spec_.useBias ? p.bias : nullptr, allowedRow(t), E_, q);
    if (spec_.limitGroups > 0)
      routing::limitGroupsRow(q, E_, spec_.limitGroups, spec_.limitTopGroups, groupScore.data());
    const int found = routing::topKRow(q, E_, k_, &selIdx_[size_t(t) * k_]);
    if (found < k_)
      fail(ErrorKind::Argument, "x: token " + str(t) + " has " + str(found) +
                                    " experts with a finite selection key, router.topK is " +
                                    str(k_) + " (non-finite input or router.weight?)");
  }
  idx_ = selIdx_;
}

// C4 minimum affinity, then C1 capacity with C2 position / C3 score / C5 reroute: fills keep_
// and, for reroute, moves slots of idx_ to their final experts. Assignments dropped by C4 do not
// take capacity.
void Router::applyCapacity(int T) {
  const int k = k_;
  keep_.assign(size_t(T) * k, 1);
  const bool minAffinity =
      spec_.type == RouterSpec::Type::Affinity && spec_.minAffinity > -INFINITY;
  auto belowAffinity = [&](int t, int e) {
    return minAffinity && cos_[size_t(t) * E_ + e] < spec_.minAffinity;
  };
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j)
      if (belowAffinity(t, idx_[size_t(t) * k + j])) keep_[size_t(t) * k + j] = 0;
  if (spec_.capacityFactor <= 0) return;
  const int64_t C = capacity::perExpert(spec_.capacityFactor, T, k, E_);
  std::vector<int64_t> used(E_, 0);
  switch (spec_.policy) {
    case RouterSpec::Policy::Position:  // C2: slots in token order
      for (size_t a = 0; a < keep_.size(); ++a) {
        if (!keep_[a]) continue;
        if (used[idx_[a]] < C)
          ++used[idx_[a]];
        else
          keep_[a] = 0;
      }
      break;
    case RouterSpec::Policy::Score: {  // C3: per expert, the C highest scores
      std::vector<std::vector<int32_t>> slots(E_);
      for (size_t a = 0; a < keep_.size(); ++a)
        if (keep_[a]) slots[idx_[a]].push_back(int32_t(a));
      for (int e = 0; e < E_; ++e) {
        if (int64_t(slots[e].size()) <= C) continue;
        std::sort(slots[e].begin(), slots[e].end(), [&](int32_t a, int32_t b) {
          return ranksHigher(s_[size_t(a / k) * E_ + e], a, s_[size_t(b / k) * E_ + e], b);
        });
        for (size_t i = size_t(C); i < slots[e].size(); ++i) keep_[slots[e][i]] = 0;
      }
      break;
    }
    case RouterSpec::Policy::Reroute:  // C5: a full choice moves down the token's key order
      for (int t = 0; t < T; ++t) {
        int32_t* row = &idx_[size_t(t) * k];
        const int32_t* selected = &selIdx_[size_t(t) * k];
        const double* q = &q_[size_t(t) * E_];
        auto chosen = [&](int e) {
          for (int j = 0; j < k; ++j)
            if (row[j] == e || selected[j] == e) return true;
          return false;
        };
        for (int j = 0; j < k; ++j) {
          if (!keep_[size_t(t) * k + j]) continue;
          if (used[row[j]] < C) {
            ++used[row[j]];
            continue;
          }
          int e = routing::nextInKeyOrder(q, E_, 0, -1);
          while (e >= 0 && (chosen(e) || used[e] >= C || belowAffinity(t, e)))
            e = routing::nextInKeyOrder(q, E_, q[e], e);
          if (e < 0) {
            keep_[size_t(t) * k + j] = 0;
          } else {
            row[j] = e;
            ++used[e];
          }
        }
      }
      break;
  }
}

// R9: expert e takes the C tokens (C1 with topK; factor 1 when dropless) with the highest s[t,e]
// among those it accepts, ties → earlier token; listed expert-major, tokens ascending.
void Router::selectExpertChoice(int T) {
  const double factor = spec_.capacityFactor > 0 ? spec_.capacityFactor : 1.0;
  const int64_t C = std::min<int64_t>(capacity::perExpert(factor, T, spec_.topK, E_), T);
  assignToken_.clear();
  assignExpert_.clear();
  std::vector<int32_t> tokens;
  for (int e = 0; e < E_; ++e) {
    tokens.clear();
    for (int t = 0; t < T; ++t)
      if (routing::isAllowed(allowedRow(t), e)) tokens.push_back(t);
    const size_t take = size_t(std::min<int64_t>(C, int64_t(tokens.size())));
    std::partial_sort(tokens.begin(), tokens.begin() + take, tokens.end(), [&](int32_t a, int32_t b) {
      return ranksHigher(s_[size_t(a) * E_ + e], a, s_[size_t(b) * E_ + e], b);
    });
    std::sort(tokens.begin(), tokens.begin() + take);
    for (size_t i = 0; i < take; ++i) {
      assignToken_.push_back(tokens[i]);
      assignExpert_.push_back(e);
    }
  }
}

// L1 micro / L2 global / L3 sequence: the value into out.balance, its gradient (through s̃, then
// s) into dLogitsAux_. Balance groups are the expert groups when tokens carry a modality (tokens
// S_g = those the group accepts, combined with weight |S_g|/n), else all experts. Global scope
// reads the window, which already holds this forward, and adds L1 micro at microFraction of the
// coefficient. Everything is weighted by this rank's token share (CountWindow::tokenShare).
void Router::computeBalance(const std::vector<int>& seqLens, Routing& out) {
  const int T = T_, k = k_;
  const bool sigmoid = scoreFn() == ScoreFn::Sigmoid;
  std::vector<double> sNorm(size_t(T) * E_), sSum(T);  // s̃ = s (softmax) or s/Σs (sigmoid)
  for (int t = 0; t < T; ++t)
    sSum[t] = losses::balanceProbsRow(&s_[size_t(t) * E_], E_, sigmoid, &sNorm[size_t(t) * E_]);
  std::vector<double> dNorm(size_t(T) * E_, 0.0);  // d balance / d s̃
  const int balanceGroups = hasModality() ? G_ : 1;
  std::vector<int32_t> members;
  std::vector<double> probs, grad;
  std::vector<int64_t> counts;
  // Adds weight · L1 over tokens [t0, t1) (f from the window when `window`) and its gradient.
  auto balanceOver = [&](int t0, int t1, double weight, bool window) {
    double value = 0;
    for (int g = 0; g < balanceGroups; ++g) {
      const int e0 = hasModality() ? layout_.groupStart[g] : 0, e1 = hasModality() ? layout_.groupStart[g + 1] : E_;
      const int width = e1 - e0;
      members.clear();
      for (int t = t0; t < t1; ++t)
        if (routing::isAllowed(allowedRow(t), e0)) members.push_back(t);
      const int S = int(members.size());
      if (S == 0) continue;
      probs.resize(size_t(S) * width);
      grad.resize(size_t(S) * width);
      for (int i = 0; i < S; ++i)
        std::copy_n(&sNorm[size_t(members[i]) * E_ + e0], width, &probs[size_t(i) * width]);
      counts.assign(width, 0);
      double counted = S;
      if (window) {
        std::copy_n(&window_.counts()[e0], width, counts.data());
        counted = double(hasModality() ? window_.groupTokens()[g] : window_.tokens());
      } else {
        for (int t : members)
          for (int j = 0; j < k; ++j) {
            const int e = selIdx_[size_t(t) * k + j];
            if (e >= e0 && e < e1) ++counts[e - e0];
          }
      }
      const double share = weight * S / (t1 - t0);
      value += share * loadBalance(probs.data(), S, width, counts.data(), counted, k,
                                   spec_.balanceCoeff, grad.data());
      for (int i = 0; i < S; ++i)
        for (int e = 0; e < width; ++e)
          dNorm[size_t(members[i]) * E_ + e0 + e] += share * grad[size_t(i) * width + e];
    }
    return value;
  };
  const double share = window_.tokenShare();
  switch (spec_.scope) {
    case RouterSpec::Scope::Micro: out.balance = balanceOver(0, T, share, false); break;
    case RouterSpec::Scope::Global:
      out.balance = balanceOver(0, T, share, true);
      if (spec_.balanceMicroFraction > 0) out.balance += balanceOver(0, T, share * spec_.balanceMicroFraction, false);
      break;
    case RouterSpec::Scope::Sequence:
      out.balance = 0;
      for (int i = 0, t0 = 0; i < int(seqLens.size()); t0 += seqLens[i], ++i)
        out.balance += balanceOver(t0, t0 + seqLens[i], share / double(seqLens.size()), false);
      break;
  }
  // s̃ → s, then s → logits (R3 backward).
  for (int t = 0; t < T; ++t) {
    double* ds = &dNorm[size_t(t) * E_];
    losses::balanceProbsRowBackward(&sNorm[size_t(t) * E_], sSum[t], E_, sigmoid, ds);
    routing::scoresRowBackward(&s_[size_t(t) * E_], allowedRow(t), E_, scoreFn(), ds,
                               &dLogitsAux_[size_t(t) * E_]);
  }
}

// ExpertStats of DESIGN Monitoring from out.counts and s_.
void Router::fillStats(Routing& out) const {
  const int T = T_;
  const int k = spec_.topK;
  const bool sigmoid = scoreFn() == ScoreFn::Sigmoid;
  out.f.assign(E_, 0.0);
  out.P.assign(E_, 0.0);
  for (int t = 0; t < T; ++t) {
    const double* s = &s_[size_t(t) * E_];
    double sum = 1.0;
    if (sigmoid) {
      sum = 0;
      for (int e = 0; e < E_; ++e) sum += s[e];
    }
    if (sum > 0)
      for (int e = 0; e < E_; ++e) out.P[e] += s[e] / sum / T;
  }
  double total = 0, maxCount = 0;
  for (int e = 0; e < E_; ++e) {
    total += out.counts[e];
    maxCount = std::max(maxCount, double(out.counts[e]));
    out.f[e] = T > 0 ? out.counts[e] / (double(T) * k) : 0.0;
  }
  out.maxVio = out.cv = out.entropy = 0;
  if (total <= 0) return;
  const double mean = total / E_;
  double var = 0, entropy = 0;
  for (int e = 0; e < E_; ++e) {
    var += (out.counts[e] - mean) * (out.counts[e] - mean) / E_;
    const double p = out.counts[e] / total;
    if (p > 0) entropy -= p * std::log(p);
  }
  out.maxVio = maxCount / mean - 1;
  out.cv = std::sqrt(var) / mean;
  out.entropy = E_ > 1 ? entropy / std::log(double(E_)) : 1.0;
}

// ---- forward -----------------------------------------------------------------------------------

void Router::forward(const float* x, int T, const int32_t* modality,
                     const std::vector<int>& seqLens, const RouterParams& p, Routing& out,
                     bool training) {
  checkRouterInputs(spec_, layout_, x, T, modality, seqLens, p);
  checkFiniteTokens(x, T, layout_.H);
  const RouterSpec& sp = spec_;
  const bool expertChoice = sp.type == RouterSpec::Type::ExpertChoice;
  // R10 reads the load estimate from router.load itself (the state dict holds all of it, so a
  // restored layer continues exactly).
  if (p.load) load_.assign(p.load, p.load + E_);

  // ---- routing (may still throw on non-finite keys; the state below is untouched until then).
  haveForward_ = false;
  T_ = T;
  k_ = expertChoice ? 0 : sp.topK;
  x_.assign(x, x + size_t(T) * H_);
  w_.assign(p.weight, p.weight + size_t(E_) * H_);
  computeLogitsAndScores(x_.data(), modality);
  out = Routing();
  out.tokens = T;
  out.k = k_;
  out.counts.assign(E_, 0);
  out.accepted.assign(E_, 0);
  assignSlot_.clear();
  if (expertChoice) {
    selectExpertChoice(T);
    selIdx_.clear();
    idx_.clear();
    keep_.clear();
    for (size_t a = 0; a < assignToken_.size(); ++a) {
      const int t = assignToken_[a], e = assignExpert_[a];
      out.assignToken.push_back(t);
      out.assignExpert.push_back(e);
      out.assignWeight.push_back(float(s_[size_t(t) * E_ + e]));
      ++out.counts[e];
      ++out.accepted[e];
    }
  } else {
    selectTopK(T, p);
    for (int32_t e : selIdx_) ++out.counts[e];
    applyCapacity(T);
    out.indices = idx_;
    out.keep = keep_;
    out.weights.resize(size_t(T) * k_);
    std::vector<double> w(k_);
    for (int t = 0; t < T; ++t) {
      routing::weightsRow(&s_[size_t(t) * E_], &idx_[size_t(t) * k_], k_, sp.normalize, sp.scale,
                          w.data());
      for (int j = 0; j < k_; ++j) {
        const size_t slot = size_t(t) * k_ + j;
        out.weights[slot] = float(w[j]);
        if (!keep_[slot]) continue;
        assignSlot_.push_back(int32_t(slot));
        out.assignToken.push_back(t);
        out.assignExpert.push_back(idx_[slot]);
        out.assignWeight.push_back(float(w[j]));
        ++out.accepted[idx_[slot]];
      }
    }
  }

  // ---- window (L2, B1): this forward's counts and token totals, summed over data parallelism.
  // An evaluation forward sees the window with its batch included but leaves it as it was.
  CountWindow::Saved saved = window_.add(out.counts, T, allowed_, reducer_);

  // ---- losses (this rank's token share of each); their gradients are kept for backward.
  dLogitsAux_.assign(size_t(T) * E_, 0.0);
  dWeightOrth_.clear();
  if (sp.balanceCoeff != 0 && !expertChoice && T > 0) computeBalance(seqLens, out);
  if (sp.zCoeff != 0 && T > 0) {
    std::vector<double> masked(logits_), grad(size_t(T) * E_);
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < E_; ++e)
        if (!routing::isAllowed(allowedRow(t), e)) masked[size_t(t) * E_ + e] = -INFINITY;
    out.z = zLoss(masked.data(), T, E_, sp.zCoeff * window_.tokenShare(), grad.data());
    for (size_t i = 0; i < grad.size(); ++i) dLogitsAux_[i] += grad[i];
  }
  if (sp.orthCoeff != 0) {
    const std::vector<double> w(w_.begin(), w_.end());
    dWeightOrth_.assign(size_t(E_) * H_, 0.0);
    out.orthogonality = routerOrthogonality(w.data(), E_, H_, sp.groupSizes.data(), G_,
                                            sp.orthMode, sp.orthCoeff * window_.tokenShare(), dWeightOrth_.data());
  }
  out.aux = out.balance + out.z + out.orthogonality;
  fillStats(out);
  if (!training) {
    window_.restore(std::move(saved));
    return;  // no load update, no step, no backward
  }

  // ---- R10 load estimate: ℓ ← (1 − decay)·ℓ + decay·f.
  if (p.load && T > 0)
    for (int e = 0; e < E_; ++e) {
      p.load[e] = capacity::loadEwma(sp.loadDecay, load_[e], out.f[e]);
    }
  ++step_;
  haveForward_ = true;
}

// ---- backward ----------------------------------------------------------------------------------

void Router::backward(const float* dAssignWeight, float* dx, float* dWeight) {
  if (!haveForward_) fail(ErrorKind::Argument, "backward: called before a successful forward");
  const int T = T_, k = k_;
  const bool expertChoice = spec_.type == RouterSpec::Type::ExpertChoice;
  const bool affinity = spec_.type == RouterSpec::Type::Affinity;
  const size_t assignments = expertChoice ? assignToken_.size() : assignSlot_.size();
  if (assignments > 0 && !dAssignWeight)
    fail(ErrorKind::Argument, "dAssignWeight: expected one value per assignment, got null");
  if (T > 0 && !dx) fail(ErrorKind::Argument, "dx: expected a [T, hidden] f32 buffer, got null");
  if (!dWeight) fail(ErrorKind::Argument, "dWeight: expected an [E, hidden] f32 buffer, got null");

  // Assignment weights → scores (R7 or R9) → logits (R3), plus the aux-loss logit gradients.
  std::vector<double> dl(dLogitsAux_), ds(size_t(T) * E_, 0.0);
  if (expertChoice) {
    for (size_t a = 0; a < assignments; ++a)
      ds[size_t(assignToken_[a]) * E_ + assignExpert_[a]] += dAssignWeight[a];
  } else {
    std::vector<double> dw(size_t(T) * k, 0.0);  // dropped slots stay 0
    for (size_t a = 0; a < assignments; ++a) dw[assignSlot_[a]] = dAssignWeight[a];
    for (int t = 0; t < T; ++t)
      routing::weightsRowBackward(&s_[size_t(t) * E_], &idx_[size_t(t) * k], k, spec_.normalize,
                                  spec_.scale, &dw[size_t(t) * k], &ds[size_t(t) * E_]);
  }
  for (int t = 0; t < T; ++t)
    routing::scoresRowBackward(&s_[size_t(t) * E_], allowedRow(t), E_, scoreFn(),
                               &ds[size_t(t) * E_], &dl[size_t(t) * E_]);

  // Logits → x and weight: ∂l_te/∂x_t = α·W_e − βx·x_t, ∂l_te/∂W_e = α·x_t − βw·W_e with the
  // R1/R8 partials of core/logit_grad.h.
  auto partials = [&](int64_t t, int64_t e) {
    return routing::logitPartials(affinity, affinity ? xNorm_[t] : 0.0, affinity ? wNorm_[e] : 0.0,
                                  affinity ? cos_[size_t(t) * E_ + e] : 0.0, spec_.temperature);
  };
  // As matrices: with A[t,e] = dl·α (f32), dx += A·W and dWeight += Aᵀ·x (two sgemms), then the
  // affinity self terms dx_t −= (Σ_e dl·βx)·x_t and dW_e −= (Σ_t dl·βw)·W_e, each summed in a
  // fixed order, so the result does not depend on the thread count.
  std::vector<float> a(size_t(T) * E_);
  std::vector<double> selfX(size_t(T), 0.0), selfW(size_t(E_), 0.0);
  parallelFor(0, T, kTokenGrain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      for (int e = 0; e < E_; ++e) {
        const double d = dl[size_t(t) * E_ + e];
        const routing::LogitPartials p = partials(t, e);
        a[size_t(t) * E_ + e] = float(d * p.alpha);
        selfX[size_t(t)] += d * p.betaX;
      }
  });
  if (affinity)
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < E_; ++e) selfW[size_t(e)] += dl[size_t(t) * E_ + e] * partials(t, e).betaW;
  const GemmProblem problems[2] = {
      {GemmLayout::NN, T, H_, E_, a.data(), E_, w_.data(), H_, dx, H_, true},
      {GemmLayout::TN, E_, H_, T, a.data(), E_, x_.data(), H_, dWeight, H_, true},
  };
  sgemmBatch(problems, T > 0 ? 2 : 0);
  if (affinity)
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H_; ++h) dx[size_t(t) * H_ + h] -= float(selfX[size_t(t)] * x_[size_t(t) * H_ + h]);
  for (int e = 0; e < E_; ++e)
    for (int h = 0; h < H_; ++h) {
      const size_t i = size_t(e) * H_ + h;
      dWeight[i] += float((dWeightOrth_.empty() ? 0.0 : dWeightOrth_[i]) - selfW[size_t(e)] * w_[i]);
    }
}

// ---- end of step -------------------------------------------------------------------------------

void Router::endStep(float* bias) {
  if (spec_.useBias && bias)
    for (int g = 0; g < G_; ++g) {
      double mean = 0;
      for (int e = layout_.groupStart[g]; e < layout_.groupStart[g + 1]; ++e) mean += double(window_.counts()[e]);
      mean /= spec_.groupSizes[g];
      for (int e = layout_.groupStart[g]; e < layout_.groupStart[g + 1]; ++e) {
        bias[e] = capacity::biasStep(bias[e], spec_.biasUpdateRate, mean, double(window_.counts()[e]));
      }
    }
  window_.reset();
}

}  // namespace moekit::cpu
