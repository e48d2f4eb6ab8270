// CPU router: a batch of tokens to expert assignments (DESIGN R1–R10), capacity (C1–C5), the
// auxiliary losses (L1–L5) with their gradients, ExpertStats, the L2 window, the R10 load EWMA
// and the B1 bias update. Row math comes from core/routing.h; loss formulas from losses.h.
//
// Vocabulary: logits l [T,E] (R1/R8), scores s [T,E] (R3), keys q (R4/R5/R10), a slot (t, j) is
// token t's j-th choice (R6 order), an assignment is a kept slot (or an expert-choice pick): what
// the experts compute. All routing arithmetic is float64.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "../core/routing.h"
#include "../layer/router_common.h"
#include "../layer/stages.h"
#include "losses.h"

namespace moekit::cpu {

class Router : public RouterStage {
 public:
  explicit Router(RouterSpec spec);  // throws Error(Config) on an inconsistent spec

  // x [T,H] f32; modality [T] (nullable; ignored when no group has a modality); seqLens (required
  // for scope Sequence, Σ = T). Keeps what backward needs; advances the step counter (R10),
  // accumulates the L2 window, updates p.load (R10). Throws Error(Shape/Argument) on bad inputs,
  // before any state changes.
  // training = false (evaluation): the same decisions and loss values, but the window, the load
  // and the step are left as they were, and no backward may follow.
  void forward(const float* x, int T, const int32_t* modality, const std::vector<int>& seqLens,
               const RouterParams& p, Routing& out, bool training) override;

  // dAssignWeight [assignments of the last forward] = dObjective/d assignWeight. Adds the gradients
  // of the routing weights and of every configured aux loss (coefficients included) into
  // dx [T,H] and dWeight [E,H].
  void backward(const float* dAssignWeight, float* dx, float* dWeight) override;

  // B1: bias_i += rate·sign(mean over i's group of c − c_i), c = window counts; then resets the L2
  // window. bias may be null (window reset only).
  void endStep(float* bias) override;

  // Optional: sums a count vector over the data-parallel group in place (L2, B1). Called once per
  // forward with [E counts, total tokens, tokens per group, 1] before it enters the window; the
  // losses are then this rank's token share (stages.h).
  void setCountReducer(std::function<void(int64_t* values, size_t n)> reducer) override {
    reducer_ = std::move(reducer);
  }

  const RouterSpec& spec() const { return spec_; }
  int experts() const { return E_; }
  uint64_t step() const override { return step_; }  // training forwards since construction (R10)
  void setStep(uint64_t step) override { step_ = step; }
  uint64_t seed() const override { return spec_.seed; }
  void setSeed(uint64_t seed) override { spec_.seed = seed; }

 private:
  void computeLogitsAndScores(const float* x, const int32_t* modality);
  void selectTopK(int T, const RouterParams& p);
  void applyCapacity(int T);
  void selectExpertChoice(int T);
  void computeBalance(const std::vector<int>& seqLens, Routing& out);
  void fillStats(Routing& out) const;
  bool hasModality() const { return !allowed_.empty(); }  // this forward masks experts (R2)
  routing::ScoreFn scoreFn() const {  // R3 function (affinity is softmax, R8)
    return spec_.type == RouterSpec::Type::Affinity ? routing::ScoreFn::Softmax : spec_.score;
  }
  const uint8_t* allowedRow(int t) const {
    return allowed_.empty() ? nullptr : &allowed_[size_t(t) * E_];
  }

  RouterSpec spec_;
  RouterLayout layout_;
  int E_ = 0, H_ = 0, G_ = 0;  // experts, hidden, groups (of layout_)
  uint64_t step_ = 0;
  std::function<void(int64_t*, size_t)> reducer_;

  CountWindow window_;        // L2 / B1 (global counts after the reducer)
  std::vector<double> load_;  // router.load of this forward in float64 (R10)

  // The last forward, for backward.
  int T_ = 0, k_ = 0;
  bool haveForward_ = false;
  std::vector<float> x_, w_;            // copies of x [T,H], weight [E,H]
  std::vector<double> wNorm_, xNorm_;   // R8 norms
  std::vector<uint8_t> allowed_;        // [T,E]; empty = all allowed
  std::vector<double> logits_, s_, q_, cos_;  // [T,E]
  std::vector<int32_t> selIdx_;         // [T,k] R6 selection (counts, balance)
  std::vector<int32_t> idx_, keep_;     // [T,k] final experts, kept flags
  std::vector<int32_t> assignSlot_;     // top-k: slot t·k+j of each assignment
  std::vector<int32_t> assignToken_, assignExpert_;  // expert-choice picks
  std::vector<double> dLogitsAux_;      // [T,E] d(balance + z)/dlogits
  std::vector<double> dWeightOrth_;     // [E,H] d orthogonality/dweight
};

}  // namespace moekit::cpu
