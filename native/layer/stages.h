// The backend interface (DESIGN §1): the stages of an MoE layer that a backend implements. The
// layer (moe_layer.h) is written once against these; the CPU backend implements them in
// native/cpu, the CUDA backend in native/cuda.
//
// Memory: the activations (x, y, dy, dx), the parameters, their gradients and the router state
// are memory of the backend's device — host memory for the CPU backend, memory of the current
// CUDA device for the CUDA one — and so are the per-assignment gradients (dWeight,
// dAssignWeight). In this version the routing decisions are host data on both: a Routing's
// vectors (Routing::device has device copies) and the assignment lists the layer hands to an
// ExpertStage (token, expert, weight). Sizes are validated by the
// implementations, which throw moekit::Error naming the argument.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "stage_types.h"

namespace moekit {

// The backend's device memory, for the layer's own work between the stages: zeroing outputs, the
// finiteness checks, gradient buckets and the host side of expert parallelism.
class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  // True when the backend's pointers are host memory (then toHost/fromHost are plain copies).
  virtual bool isHost() const = 0;
  virtual void zero(float* p, size_t n) const = 0;
  // The first row of a [rows, cols] f32 matrix holding a NaN or an Inf, or −1; the host waits for it.
  virtual int firstNonFiniteRow(const float* a, int rows, int cols) const = 0;
  // device ← device, ordered after the work enqueued so far.
  virtual void copy(void* to, const void* from, size_t bytes) const = 0;
  // host ← device (waits for the bytes) and device ← host.
  virtual void toHost(void* host, const void* device, size_t bytes) const = 0;
  virtual void fromHost(void* device, const void* host, size_t bytes) const = 0;
  // Scratch of `bytes` bytes, returned to the device when the last owner drops it.
  virtual std::shared_ptr<void> allocate(size_t bytes) const = 0;
};

// Routing (R1–R10), capacity (C1–C5), the aux losses (L1–L5) and their gradients, B1.
class RouterStage {
 public:
  virtual ~RouterStage() = default;
  // x [T,H]; modality [T] or null; seqLens for the sequence scope. Fills `out`.
  virtual void forward(const float* x, int T, const int32_t* modality, const std::vector<int>& seqLens,
                       const RouterParams& p, Routing& out, bool training) = 0;
  // dAssignWeight [assignments]: adds routing-weight and aux-loss gradients into dx and dWeight.
  virtual void backward(const float* dAssignWeight, float* dx, float* dWeight) = 0;
  // B1 with the window counts, then closes the window (L2).
  virtual void endStep(float* bias) = 0;
  // Sums [E counts, tokens, tokens per group, ranks] over the data-parallel group at every forward
  // (L2, B1). With it, the loss values and their gradients are this rank's share: scaled by its
  // tokens over the group's (CountWindow::tokenShare).
  virtual void setCountReducer(std::function<void(int64_t* values, size_t n)> reducer) = 0;
  virtual uint64_t step() const = 0;
  // Restores the step (R10's noise counter) from a state dict.
  virtual void setStep(uint64_t step) = 0;
  // R10's Philox key (RouterSpec::seed): the constructor's, or restored from a state dict
  // (router.seed), so a resumed sampled router draws the noise of the run it continues.
  virtual uint64_t seed() const = 0;
  virtual void setSeed(uint64_t seed) = 0;
};

// Expert FFNs over weighted assignments (X1–X2): permute, grouped GEMMs, activation, combine.
class ExpertStage {
 public:
  virtual ~ExpertStage() = default;
  // y [T,H] += Σ_a weight[a]·E_expert[a](x_token[a]).
  virtual void forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
                       const float* weight, float* y) = 0;
  // dx += ∂/∂x, group grads +=, dWeight[a] = ∂objective/∂weight[a] (either may be null).
  virtual void backward(const float* dy, float* dx, float* dWeight) = 0;
  virtual int64_t flops(int expert) const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual const DeviceMemory& memory() const = 0;
  virtual std::unique_ptr<RouterStage> makeRouter(const RouterSpec& spec) const = 0;
  virtual std::unique_ptr<ExpertStage> makeExperts(int hidden, Activation activation,
                                                   std::vector<ExpertGroup> groups,
                                                   Precision precision) const = 0;
};

}  // namespace moekit
