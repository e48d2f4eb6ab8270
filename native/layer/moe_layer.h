// The MoE layer (DESIGN §2–§3), written once against the backend stages of stages.h:
//
//   route     router stage: logits, scores, top-k / expert choice, capacity, aux losses (R, C, L)
//   experts   routed experts over the kept assignments, y += Σ w·E_e(x)          (X1–X2)
//   shared    shared experts, every token at weight 1                              (X2)
//
// backward runs the same stages in reverse: experts give dx and ∂/∂weight of each assignment,
// the router turns those (plus its aux losses) into dx and the router-weight gradient.
// The layer borrows its parameter and gradient buffers (the addon owns them); they, x, y, dy and
// dx are memory of the backend's device (stages.h), which the layer touches only through the
// backend's DeviceMemory.
//
// Parallel (parallel_groups.h): with an expert group the routed-expert stage is ExpertParallel
// around the backend's stage over this rank's expert blocks (LayerBuffers.groups then hold the
// blocks, Eg/P experts each); with any group the router sums its window counts over the token
// group and reports this rank's token share of the losses.
#pragma once

#include <memory>
#include <vector>

#include "expert_parallel.h"
#include "parallel_groups.h"
#include "router_common.h"
#include "stages.h"

namespace moekit {

struct LayerSpec {
  RouterSpec router;               // includes hidden, groups, modality
  Activation activation = Activation::Swiglu;
  std::vector<int> groupFfn;       // ffnHidden per expert group
  int sharedCount = 0, sharedFfn = 0;
  Precision precision;             // of the routed and the shared experts (stage_types.h)
};

struct LayerBuffers {              // parameters, state and gradient accumulators
  const float* routerWeight = nullptr;  // [E,H]
  float* routerBias = nullptr;          // [E] state (R4, B1)
  float* routerLoad = nullptr;          // [E] state (R10)
  float* routerWeightGrad = nullptr;    // [E,H]
  std::vector<ExpertGroup> groups;      // per expert group (this rank's block when expert-parallel)
  ExpertGroup shared;                   // count 0 when there are no shared experts
};

// checkFinite (opt-in): where a forward first produced a NaN or an Inf, in stage order.
//   RouterWeight  a row of router.weight (expert) is non-finite; the router did not run
//   Router        the routing weight of an assignment (token, expert) or the aux loss (−1, −1)
//   Expert        y row `token` after the routed experts; `expert` is the first of the token's
//                 experts whose own output E_e(x_t) is non-finite (−1: only their sum overflowed)
//   Shared        y row `token` after the shared experts; `expert` as above, a shared index
struct NonFinite {
  enum class Stage { None, RouterWeight, Router, Expert, Shared } stage = Stage::None;
  int token = -1, expert = -1;
};

struct LayerForward {
  Routing routing;
  NonFinite nonFinite;           // filled when forward's checkFinite is set
  std::vector<int32_t> dropped;  // [E] slots dropped while pointing at each expert (C2–C5)
  std::vector<int64_t> flops;    // [E] forward FLOPs of each routed expert
  int64_t sharedFlops = 0;
};

class MoELayer {
 public:
  // With parallel groups the constructor is a collective of each group: the ranks check that
  // they agree on hidden, the expert count, the groups and ranksPerNode (Error(Shape/Argument) on
  // every rank otherwise). parallel.expert and parallel.data must differ (Error(Config)).
  MoELayer(const Backend& backend, LayerSpec spec, LayerBuffers buffers, ParallelGroups parallel = {});

  // x [T,H]; y [T,H] is overwritten. modality [T] or null; seqLens for the sequence scope.
  // checkFinite: fills out.nonFinite; a forward that found one allows no backward.
  void forward(const float* x, int T, const int32_t* modality, const std::vector<int>& seqLens,
               bool training, float* y, LayerForward& out, bool checkFinite = false);
  // dy [T,H] of the last training forward; dx [T,H] is overwritten; gradients accumulate.
  void backward(const float* dy, float* dx);
  // B1 bias update with the window counts; closes the L2 window.
  void endStep();
  // DESIGN §2 allReduceGrads: sums the gradients of the replicated parameters (router, shared
  // experts) over the expert group and the data group, and the expert blocks' over the data group;
  // `data` (when not null) stands for parallel.data. Error(Argument) when there is no group.
  void allReduceGrads(comm::Communicator* data);

  const LayerSpec& spec() const { return spec_; }
  int experts() const;
  uint64_t step() const { return router_->step(); }
  int tokens() const { return T_; }  // T of the last forward
  RouterStage& router() { return *router_; }
  const ExpertParallel* expertParallel() const { return expertParallel_; }  // null unless expert-parallel
  const DeviceMemory& memory() const { return memory_; }  // the backend's

 private:
  const DeviceMemory& memory_;  // the backend's
  LayerSpec spec_;
  RouterLayout layout_;  // checkRouterSpec of spec_.router, for the input checks of forward
  LayerBuffers buffers_;
  std::unique_ptr<RouterStage> router_;
  std::unique_ptr<ExpertStage> experts_, shared_;
  ParallelGroups parallel_;
  ExpertParallel* expertParallel_ = nullptr;  // experts_, when expert-parallel
  int T_ = 0;
  bool haveForward_ = false;
  std::unique_ptr<ExpertStage> hostExperts_;  // expert-parallel on a device: see the constructor
  std::vector<int32_t> sharedToken_, sharedExpert_;
  std::vector<float> sharedWeight_;
  size_t assignments_ = 0;
};

}  // namespace moekit
