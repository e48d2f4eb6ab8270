// Routed (and shared) expert FFNs of DESIGN §3, X1–X2, on a CUDA device: the same contract as
// cpu::Experts (native/cpu/experts.h), which is its reference.
//
//   X1  swiglu  h = silu(x·w1ᵀ) ⊙ (x·w3ᵀ)      gelu (exact erf) / relu  h = act(x·w1ᵀ)
//       E_e(x) = h·w2ᵀ
//   X2  y_t += Σ_a [token[a] = t] · weight[a] · E_{expert[a]}(x_t)
//
// Memory — HOST-STAGED in this version. Every pointer handed to this class (x, token, expert,
// weight, y, dy, dx, dWeight, and the ExpertGroup weights and gradients) is HOST memory, as the
// tensors of this version live on the host. Each call copies its inputs into device buffers
// (cudaMalloc'd by the stage, kept across calls and grown when a call needs more), runs the
// kernels on the stage's own stream, copies the results back and synchronises before returning:
//   forward   uploads the group weights (they may have changed since the last call), x and the
//             assignments; uploads y, adds the experts' outputs on the device, downloads y.
//   backward  uploads dy; for each group with rows, uploads the gradient accumulators that are not
//             null, accumulates into them on the device and downloads them; uploads dx, adds into
//             it on the device, downloads it; downloads dWeight.
// Backward differentiates with the weights uploaded by the last forward. Device-resident tensors
// (no staging) come later; the kernels and launchers (permute.h, grouped_gemm.h) already take
// device pointers.
//
// Stages on the device: stable sort of the assignments by (expert, token, assignment) → row map
// (the order of cpu::planPermutation) → permute → per group: NT GEMM with the activation in its
// epilogue (swiglu: both w1 and w3 in one pass) → NT GEMM with w2 → weighted combine, one thread
// per (token, h) summing its rows in row order. Everything is deterministic (no float atomics).
//
// Precision (layer/stage_types.h), the numerics of cpu::Experts: the fp32 kernels read the mode's
// operand values (precision_operands.h; bf16·bf16 and e4m3·e4m3 products are exact in fp32, so
// this is the tensor-core GEMMs' math up to the order of the fp32 sums):
//   Bf16        x rows, weights, h, dy and da1/da3 RNE-rounded to bf16 on the device before the
//               GEMMs that read them, forward and backward
//   Bf16 + Fp8  the forward reads x and h as their 1×128 and the weights as their 128×128 e4m3
//               block values (quantizeFp8Blocks' scales); the backward is the Bf16 one
// The tensor-core GEMMs (grouped_gemm_bf16.h, grouped_gemm_fp8.h: padded groups, K a multiple of
// 8 / 16) are not wired in yet.
//
// Errors: the constructor and forward validate like cpu::Experts (Error(Shape/Argument), same
// messages) before touching the device; a failed CUDA call throws Error(Device) naming what failed;
// under the SIMT emulator a kernel bug propagates as moekit::emu::KernelFault. After an exception
// there is no forward to differentiate until the next successful forward.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "../layer/stages.h"
#include "cuda_check.h"
#include "staging.h"
#include "permute.h"

namespace moekit::cuda {

class Experts : public ExpertStage {
 public:
  // Throws Error(Argument/Shape) on a non-positive size, no group, or a missing weight; then
  // Error(Device) when the stream or the weight buffers cannot be created on the current device.
  // The HOST weight and gradient buffers are borrowed: they must outlive every forward/backward.
  // precision: F32/Same by default; Fp8 experts need Bf16 compute (Error(Argument) otherwise).
  Experts(int hidden, Activation act, std::vector<ExpertGroup> groups, Precision precision = {});
  Experts(const Experts&) = delete;
  Experts& operator=(const Experts&) = delete;

  // x [T,H]; n assignments token[a] in [0,T), expert[a] in [0,E), weight[a]. y [T,H] is ADDED
  // to. n = 0 leaves y alone. All HOST pointers (see the staging note above).
  void forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
               const float* weight, float* y) override;

  // dy [T,H] of the last forward. Adds into dx [T,H] and the group gradient buffers; writes
  // dWeight[a] = dy_t · E_e(x_t) (fp32 sum). dx and dWeight may be null. All HOST pointers.
  void backward(const float* dy, float* dx, float* dWeight) override;

  // 2·rows_e·H·Fg·(3 for swiglu, else 2) of the last forward; 0 before the first forward.
  int64_t flops(int expert) const override;

  int experts() const { return E_; }
  int hidden() const { return H_; }
  Activation activation() const { return act_; }
  Precision precision() const { return precision_; }
  // Rows each expert received in the last forward ([E]).
  const std::vector<int32_t>& counts() const { return counts_; }

 private:
  struct GroupState {
    int firstExpert = 0;
    int64_t firstRow = 0, rows = 0;  // of the last forward, in permuted order
    int64_t activationOffset = 0;    // first element of the group in a1/a3/h/da1/da3
    DeviceBuffer<float> w1, w3, w2;  // [Eg,Fg,H], [Eg,Fg,H] (swiglu), [Eg,H,Fg]
    DeviceBuffer<float> g1, g3, g2;  // gradient accumulators, staged at backward
    // Low-precision modes: the weights as the backward (bf16) and the fp8 forward read them.
    DeviceBuffer<float> w1b, w3b, w2b, w1f, w3f, w2f;
  };

  // The group's weights as the forward GEMMs read them (the low modes fill w*b and w*f here).
  void forwardWeights(size_t group, const float*& w1, const float*& w3, const float*& w2);


  int H_ = 0, E_ = 0;
  Activation act_;
  Precision precision_;
  std::vector<ExpertGroup> groups_;
  std::vector<GroupState> state_;
  StagingStream stream_{"cuda::Experts"};

  // The last forward.
  bool haveForward_ = false;
  int T_ = 0, n_ = 0;
  int64_t activations_ = 0;                // Σ_g rows_g·Fg: elements of a1/a3/h/da1/da3
  std::vector<int32_t> counts_, offsets_;  // HOST [E], [E+1]

  // Device buffers (grown as needed). Assignments: [n]; rows: [n] in permuted order.
  DeviceBuffer<float> x_, y_, weight_, xp_, yp_, rowWeight_;
  DeviceBuffer<int32_t> token_, expert_, rowAssignment_, rowToken_, expertStart_;
  DeviceBuffer<int32_t> tokenRows_, tokenStart_;  // rows of each token, ascending; [T+1]
  DeviceBuffer<float> a1_, a3_, h_;               // pre-activations and activations, all groups
  DeviceBuffer<float> dy_, dyp_, dxp_, dx_, dWeight_, da1_, da3_;
  SortScratch sort_;
  DeviceBuffer<float> xpf_, hf_;  // fp8 mode: the forward's x rows and h
  DeviceBuffer<uint8_t> fp8Codes_;
  DeviceBuffer<float> fp8Scales_;
};

}  // namespace moekit::cuda
