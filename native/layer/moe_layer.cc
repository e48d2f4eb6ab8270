#include "moe_layer.h"

#include <algorithm>
#include <string>

#include "../core/errors.h"

namespace moekit {

MoELayer::MoELayer(const Backend& backend, LayerSpec spec, LayerBuffers buffers)
    : spec_(std::move(spec)), buffers_(std::move(buffers)) {
  if (spec_.groupFfn.size() != spec_.router.groupSizes.size() || buffers_.groups.size() != spec_.groupFfn.size()) {
    throw Error(ErrorKind::Config, "experts: every group needs its ffnHidden and its weights");
  }
  router_ = backend.makeRouter(spec_.router);
  experts_ = backend.makeExperts(spec_.router.hidden, spec_.activation, buffers_.groups);
  if (spec_.sharedCount > 0) {
    shared_ = backend.makeExperts(spec_.router.hidden, spec_.activation, {buffers_.shared});
  }
}

int MoELayer::experts() const {
  int e = 0;
  for (int size : spec_.router.groupSizes) e += size;
  return e;
}

void MoELayer::forward(const float* x, int T, const int32_t* modality, const std::vector<int>& seqLens,
                       bool training, float* y, LayerForward& out) {
  const int H = spec_.router.hidden, E = experts();
  haveForward_ = false;
  RouterParams params{buffers_.routerWeight, buffers_.routerBias, buffers_.routerLoad};
  router_->forward(x, T, modality, seqLens, params, out.routing, training);
  const Routing& r = out.routing;

  std::fill(y, y + size_t(T) * H, 0.0f);
  assignments_ = r.assignToken.size();
  experts_->forward(x, T, int(assignments_), r.assignToken.data(), r.assignExpert.data(), r.assignWeight.data(), y);
  out.flops.assign(E, 0);
  for (int e = 0; e < E; ++e) out.flops[e] = experts_->flops(e);

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
  haveForward_ = training;
}

void MoELayer::backward(const float* dy, float* dx) {
  if (!haveForward_) throw Error(ErrorKind::Argument, "backward: needs a training forward first (forward with training: true)");
  std::fill(dx, dx + size_t(T_) * spec_.router.hidden, 0.0f);
  std::vector<float> dWeight(assignments_);
  experts_->backward(dy, dx, dWeight.data());
  if (shared_) shared_->backward(dy, dx, nullptr);
  router_->backward(dWeight.data(), dx, buffers_.routerWeightGrad);
  haveForward_ = false;  // one backward per forward: a second would count the gradients twice
}

void MoELayer::endStep() { router_->endStep(buffers_.routerBias); }

}  // namespace moekit
