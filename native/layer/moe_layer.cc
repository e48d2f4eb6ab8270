#include "moe_layer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "../core/errors.h"
#include "memory_bridge.h"

namespace moekit {

namespace {

// checkFinite diagnosis, run only once a y row is bad: the first of `candidates` whose output on
// token t alone (weight 1) is non-finite, or −1. Reuses the stage, so its backward state is lost.
int firstNonFiniteExpert(const DeviceMemory& memory, ExpertStage& stage, const float* x, int t, int H,
                         const std::vector<int32_t>& candidates) {
  std::shared_ptr<void> scratch = memory.allocate(size_t(H) * sizeof(float));
  float* out = static_cast<float*>(scratch.get());
  const int32_t token = 0;
  const float weight = 1.0f;
  for (int32_t e : candidates) {
    memory.zero(out, size_t(H));
    stage.forward(x + size_t(t) * H, 1, 1, &token, &e, &weight, out);
    if (memory.firstNonFiniteRow(out, 1, H) >= 0) return e;
  }
  return -1;
}

}  // namespace

MoELayer::MoELayer(const Backend& backend, LayerSpec spec, LayerBuffers buffers, ParallelGroups parallel)
    : memory_(backend.memory()), spec_(std::move(spec)), layout_(checkRouterSpec(spec_.router)), buffers_(std::move(buffers)), parallel_(parallel) {
  if (spec_.groupFfn.size() != spec_.router.groupSizes.size() || buffers_.groups.size() != spec_.groupFfn.size()) {
    throw Error(ErrorKind::Config, "experts: every group needs its ffnHidden and its weights");
  }
  if (parallel_.expert && parallel_.expert == parallel_.data)
    throw Error(ErrorKind::Config, "parallel.data: expected a group orthogonal to parallel.expert, got the same communicator "
                                   "(with experts sharded over every rank, pass parallel.expert alone)");
  router_ = backend.makeRouter(spec_.router);
  const int H = spec_.router.hidden, G = int(spec_.groupFfn.size());
  for (comm::Communicator* group : {parallel_.expert, parallel_.data})
    if (group) group->checkAgreement("new MoELayer: hidden", H, comm::ElemType::F32, "expert count", experts());
  std::unique_ptr<ExpertStage> routed = backend.makeExperts(H, spec_.activation, buffers_.groups, spec_.precision);
  if (parallel_.expert) {
    parallel_.expert->checkAgreement("new MoELayer: expert groups", G, comm::ElemType::I32, "parallel.ranksPerNode",
                                     parallel_.ranksPerNode);
    // The exchange moves host rows: on a device backend the local stage is bridged to host memory
    // and the whole stage back to device memory (memory_bridge.h).
    if (!memory_.isHost()) routed = std::make_unique<HostSideExperts>(memory_, H, std::move(routed));
    auto wrapped = std::make_unique<ExpertParallel>(*parallel_.expert, parallel_.ranksPerNode, H, spec_.activation,
                                                    spec_.router.groupSizes, spec_.groupFfn, std::move(routed));
    expertParallel_ = wrapped.get();
    routed = std::move(wrapped);
    if (!memory_.isHost()) routed = std::make_unique<DeviceSideExperts>(memory_, H, std::move(routed));
  }
  experts_ = std::move(routed);
  router_->setCountReducer(countReducer(parallel_));
  if (spec_.sharedCount > 0) {
    shared_ = backend.makeExperts(H, spec_.activation, {buffers_.shared}, spec_.precision);
  }
}

int MoELayer::experts() const {
  int e = 0;
  for (int size : spec_.router.groupSizes) e += size;
  return e;
}

void MoELayer::forward(const float* x, int T, const int32_t* modality, const std::vector<int>& seqLens,
                       bool training, float* y, LayerForward& out, bool checkFinite) {
  const int H = spec_.router.hidden, E = experts();
  using Stage = NonFinite::Stage;
  RouterParams params{buffers_.routerWeight, buffers_.routerBias, buffers_.routerLoad};
  // DESIGN §4: a refused call changes nothing, so the inputs (a non-finite token included) are
  // checked before the saved forward is dropped; the router repeats the check for its own callers.
  checkRouterInputs(spec_.router, layout_, x, T, modality, seqLens, params);
  checkFiniteTokens(memory_, x, T, H);
  haveForward_ = false;
  out.nonFinite = NonFinite{};
  if (checkFinite) {
    const int e = memory_.firstNonFiniteRow(buffers_.routerWeight, E, H);
    if (e >= 0) {  // before the router runs, so its state (window, load, step) stays as it was
      out.nonFinite = {Stage::RouterWeight, -1, e};
      memory_.zero(y, size_t(T) * H);
      T_ = T;
      return;
    }
  }
  router_->forward(x, T, modality, seqLens, params, out.routing, training);
  const Routing& r = out.routing;
  if (checkFinite) {
    for (size_t a = 0; a < r.assignWeight.size() && out.nonFinite.stage == Stage::None; ++a)
      if (!std::isfinite(r.assignWeight[a])) out.nonFinite = {Stage::Router, r.assignToken[a], r.assignExpert[a]};
    if (out.nonFinite.stage == Stage::None && !std::isfinite(r.aux)) out.nonFinite = {Stage::Router, -1, -1};
  }

  memory_.zero(y, size_t(T) * H);
  assignments_ = r.assignToken.size();
  experts_->forward(x, T, int(assignments_), r.assignToken.data(), r.assignExpert.data(), r.assignWeight.data(), y);
  out.flops.assign(E, 0);
  for (int e = 0; e < E; ++e) out.flops[e] = experts_->flops(e);
  int badAfterExperts = -1;
  if (checkFinite && out.nonFinite.stage == Stage::None) badAfterExperts = memory_.firstNonFiniteRow(y, T, H);

  out.sharedFlops = 0;
  if (shared_) {
    sharedToken_.clear();
    sharedExpert_.clear();
    for (int s = 0; s < spec_.sharedCount; ++s)
      for (int t = 0; t < T; ++t) {
        sharedToken_.push_back(t);
        sharedExpert_.push_back(s);
      }
    sharedWeight_.assign(sharedToken_.size(), 1.0f);
    shared_->forward(x, T, int(sharedToken_.size()), sharedToken_.data(), sharedExpert_.data(), sharedWeight_.data(), y);
    for (int s = 0; s < spec_.sharedCount; ++s) out.sharedFlops += shared_->flops(s);
  }

  out.dropped.assign(E, 0);
  for (size_t slot = 0; slot < r.keep.size(); ++slot)
    if (!r.keep[slot]) ++out.dropped[r.indices[slot]];
  T_ = T;

  // checkFinite diagnosis last: it reruns single experts, which overwrites the stages' saved state.
  if (badAfterExperts >= 0) {
    std::vector<int32_t> candidates;
    for (size_t a = 0; a < assignments_; ++a)
      if (r.assignToken[a] == badAfterExperts) candidates.push_back(r.assignExpert[a]);
    out.nonFinite = {Stage::Expert, badAfterExperts,
                     expertParallel_ ? expertParallel_->firstNonFiniteExpert(badAfterExperts)
                                     : firstNonFiniteExpert(memory_, *experts_, x, badAfterExperts, H, candidates)};
  } else if (checkFinite && shared_ && out.nonFinite.stage == Stage::None) {
    const int t = memory_.firstNonFiniteRow(y, T, H);
    if (t >= 0) {
      std::vector<int32_t> candidates(size_t(spec_.sharedCount));
      for (int s = 0; s < spec_.sharedCount; ++s) candidates[size_t(s)] = s;
      out.nonFinite = {Stage::Shared, t, firstNonFiniteExpert(memory_, *shared_, x, t, H, candidates)};
    }
  }
  haveForward_ = training && out.nonFinite.stage == Stage::None;
}

void MoELayer::backward(const float* dy, float* dx) {
  if (!haveForward_) throw Error(ErrorKind::Argument, "backward: needs a training forward first (forward with training: true)");
  memory_.zero(dx, size_t(T_) * spec_.router.hidden);
  const std::shared_ptr<void> scratch = memory_.allocate(assignments_ * sizeof(float));
  float* dWeight = static_cast<float*>(scratch.get());
  experts_->backward(dy, dx, dWeight);
  if (shared_) shared_->backward(dy, dx, nullptr);
  router_->backward(dWeight, dx, buffers_.routerWeightGrad);
  haveForward_ = false;  // one backward per forward: a second would count the gradients twice
}

void MoELayer::endStep() { router_->endStep(buffers_.routerBias); }

void MoELayer::allReduceGrads(comm::Communicator* data) {
  comm::Communicator* dataGroup = data ? data : parallel_.data;
  if (!dataGroup && !parallel_.expert)
    throw Error(ErrorKind::Argument, "allReduceGrads: comm: expected a communicator (the layer has no parallel.data or parallel.expert)");
  if (dataGroup && dataGroup == parallel_.expert)
    throw Error(ErrorKind::Argument, "allReduceGrads: comm: expected the data-parallel group, got the layer's parallel.expert");
  const int64_t H = spec_.router.hidden;
  std::vector<GradBuffer> replicated, blocks;
  auto add = [&](std::vector<GradBuffer>& to, const ExpertGroup& g) {
    const int64_t n = int64_t(g.count) * g.ffn * H;
    for (float* grad : {g.g1, spec_.activation == Activation::Swiglu ? g.g3 : nullptr, g.g2})
      if (grad) to.push_back({grad, n});
  };
  if (buffers_.routerWeightGrad) replicated.push_back({buffers_.routerWeightGrad, int64_t(experts()) * H});
  if (spec_.sharedCount > 0) add(replicated, buffers_.shared);
  for (const ExpertGroup& g : buffers_.groups) add(parallel_.expert ? blocks : replicated, g);
  if (parallel_.expert) allReduceBucket(memory_, *parallel_.expert, replicated);
  if (dataGroup) {
    replicated.insert(replicated.end(), blocks.begin(), blocks.end());
    allReduceBucket(memory_, *dataGroup, replicated);
  }
}

}  // namespace moekit
