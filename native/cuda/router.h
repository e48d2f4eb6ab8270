// cuda::Router: the RouterStage of DESIGN §3 on a CUDA device — routing (R1–R10), capacity
// (C1–C5), the aux losses (L1–L5) with their gradients, ExpertStats, the L2 window, the R10 load
// EWMA and the B1 bias update — the same contract as cpu::Router (native/cpu/router.h), which is
// its reference and whose validation (layer/router_common.h) it shares.
//
// Memory (stages.h): x, router.weight, bias, load, dx and dWeight are DEVICE memory of the current
// device; forward copies x and the weight on the device for the backward, updates load in place,
// and downloads the decisions, the loss values and the stats (host data in this version: the
// forward synchronises for them); backward uploads the assignment-weight gradients and adds into
// dx and dWeight on the device; endStep uploads the window counts and updates the bias in place.
// The float64 work buffers (logits, s, q, cos, the aux-loss logit gradients) stay on the device
// between forward and backward. x's finiteness (DESIGN §4) is checked by the caller
// (checkFiniteTokens over the backend's DeviceMemory, as MoELayer does): forward reads no x value
// on the host.
//
// Stages per forward, each a launcher of its own file:
//   routing.h         R1/R8 logits (+ norms), R3 → R4/R10 → R5 → R6 selection, R7 weights
//   router_stats.h    R6 counts, accepted counts, ExpertStats, the R10 load update
//   capacity.h        C4 minimum affinity, C1 capacity with C2 / C3 / C5
//   expert_choice.h   R9
//   router_losses.h   L1–L3 balance (micro / sequence / global window), L4 z, L5 orthogonality
//   router_backward.h R7/R9 → R3 → logits → x and router.weight
//   router_stats.h    B1 at endStep
// The window (CountWindow) is host state: its reducer is a host callback (data-parallel all-reduce).
// Between steps the router holds no device memory: a forward's work buffers go back to the pool at
// its end, what it keeps for the backward (x, the weight, s, the selection, the cosines and norms,
// the aux-loss gradients) and its decisions in device memory (Routing::device: indices, keep,
// weights, the assignment lists, compacted on the device) at the backward's end.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "../layer/router_common.h"
#include "../layer/stages.h"
#include "capacity.h"
#include "cuda_check.h"
#include "device_buffer.h"
#include "staging.h"
#include "expert_choice.h"

namespace moekit::cuda {

class Router : public RouterStage {
 public:
  // Throws Error(Config) on an inconsistent spec (the messages of cpu::Router), then
  // Error(Device) when the stream cannot be created.
  explicit Router(RouterSpec spec);
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // The contract of cpu::Router::forward over device x and params (host modality and seqLens).
  void forward(const float* x, int T, const int32_t* modality, const std::vector<int>& seqLens,
               const RouterParams& p, Routing& out, bool training) override;
  // The contract of cpu::Router::backward over device dAssignWeight, dx and dWeight.
  void backward(const float* dAssignWeight, float* dx, float* dWeight) override;
  void endStep(float* bias) override;
  void setCountReducer(std::function<void(int64_t* values, size_t n)> reducer) override {
    reducer_ = std::move(reducer);
  }
  uint64_t step() const override { return step_; }
  void setStep(uint64_t step) override { step_ = step; }
  uint64_t seed() const override { return spec_.seed; }  // read by every forward (selectArgsOf)
  void setSeed(uint64_t seed) override { spec_.seed = seed; }

 private:
  void copyOnDevice(void* to, const void* from, size_t bytes, const char* what);
  // Back to the pool: the forward's scratch (at its end), and what it kept for the backward (at the
  // backward's end, or at the next forward).
  void releaseForwardScratch();
  void releaseBackward();
  // The decisions in device memory (Routing::device): kept until the backward's end, or the next
  // forward after an evaluation one.
  void releaseResults();
  void computeScores(const float* x, const RouterParams& p);
  void selectTopK(Routing& out);
  void selectExpertChoice(Routing& out);
  void computeLosses(const std::vector<int>& seqLens);
  void computeStats(Routing& out);
  routing::ScoreFn scoreFn() const {
    return spec_.type == RouterSpec::Type::Affinity ? routing::ScoreFn::Softmax : spec_.score;
  }
  const uint8_t* allowedDevice() const { return allowed_.empty() ? nullptr : allowedDev_.get(); }

  RouterSpec spec_;
  RouterLayout layout_;
  CountWindow window_;
  int E_ = 0, H_ = 0;
  bool affinity_ = false, expertChoice_ = false, sampled_ = false;
  uint64_t step_ = 0;
  std::function<void(int64_t*, size_t)> reducer_;
  StagingStream stream_{"cuda::Router"};

  // The last forward (HOST): size, R2 mask, kept slots (top-k) or picks (expert-choice).
  int T_ = 0, k_ = 0;
  bool haveForward_ = false, haveOrthogonality_ = false;
  std::vector<uint8_t> allowed_;
  int64_t kept_ = 0, picks_ = 0;

  // DEVICE buffers, grown as needed.
  DeviceBuffer<float> x_, w_, weights_, pickDw_, assignWeight_;
  DeviceBuffer<double> load64_, logits_, s_, q_, cos_, xNorm_, wNorm_, groupScore_, wScratch_;
  DeviceBuffer<double> dLogitsAux_, dWeightOrth_, dSlot_, f_, P_, stats3_, lossValues_;
  DeviceBuffer<uint8_t> allowedDev_;
  DeviceBuffer<int32_t> selIdx_, idx_, keep_, found_, counts_, accepted_, pickToken_, pickExpert_;
  DeviceBuffer<int32_t> assignToken_, assignExpert_, assignSlotDevice_;
  DeviceBuffer<int64_t> windowCounts_;
  DeviceBuffer<unsigned long long> shortToken_;
  CapacityScratch capacityScratch_;
  ExpertChoiceScratch expertChoiceScratch_;
};

}  // namespace moekit::cuda
