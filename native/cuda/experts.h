// Routed (and shared) expert FFNs of DESIGN §3, X1–X2, on a CUDA device: the same contract as
// cpu::Experts (native/cpu/experts.h), which is its reference.
//
//   X1  swiglu  h = silu(x·w1ᵀ) ⊙ (x·w3ᵀ)      gelu (exact erf) / relu  h = act(x·w1ᵀ)
//       E_e(x) = h·w2ᵀ
//   X2  y_t += Σ_a [token[a] = t] · weight[a] · E_{expert[a]}(x_t)
//
// Memory (stages.h): x, y, dy, dx and the ExpertGroup weights and gradients are DEVICE memory of
// the current device, read and written in place, and so is dWeight; the assignment lists (token,
// expert, weight) are host data in this version. forward uploads the assignments, downloads the
// expert offsets to size the GEMMs (the one synchronisation of a forward) and adds the experts'
// outputs into y; backward adds into dx and the gradient accumulators and writes dWeight, without
// a synchronisation. Backward differentiates with the weights as they are when it runs.
//
// Stages on the device: stable sort of the assignments by (expert, token, assignment) → row map
// (the order of cpu::planPermutation) → permute → the expert GEMMs (below) → weighted combine, one
// thread per (token, h) summing its rows in row order. Everything is deterministic (no float
// atomics, no split sums): a forward or backward repeated on the same inputs gives the same bits.
//
// The low-precision operands of a weight (its bf16 values, bf16 bits, e4m3 codes and scales) are
// rebuilt at a forward only when the weight changed since they were built (ExpertGroup::w*Version;
// always without a counter), so forwards between two optimizer steps convert each weight once.
//
// Precision (layer/stage_types.h), the numerics of cpu::Experts, and the GEMMs that run
// (expertGemm; out.precision.gemm in lib/native.ts):
//   F32         f32 SIMT GEMMs (grouped_gemm.h) with the activation in the up projection's epilogue
//               (swiglu: w1 and w3 in one pass)
//   Bf16        tensor-core forward (grouped_gemm_bf16.h). Per group: x rows (bf16-rounded, also
//               the backward's operand) packed as bf16 bits into the padded layout of
//               padded_groups.h (padded_rows.h; each expert's rows from a multiple of 64), the
//               weights converted once per forward from the f32 masters to bf16 bits;
//               groupedGemmBf16Swiglu (swiglu) or groupedGemmBf16 (gelu, relu) for the up
//               projection, whose padded outputs are copied back to the compact rows the backward
//               reads (a1, a3, h; gelu/relu apply the activation in that copy); bf16(h) packed again
//               and groupedGemmBf16 for the down projection; its rows copied back for the combine.
//   Bf16 + Fp8  the same with groupedGemmFp8: x rows and h quantised in 1×128 blocks
//               (quantize_fp8.h), the weights in 128×128 blocks, codes and scales packed into the
//               padded layout; the up projection runs once for w1 (and once for w3), the activation
//               applied in the copy back to the compact rows. groupedGemmFp8 runs its wgmma
//               kernel on compute capability 9.0 (expertGemm says TensorCoreWgmma), mma.sync
//               elsewhere. On a device below compute capability 8.9 (no fp8 mma) this mode takes
//               the f32 SIMT GEMMs fed the e4m3 block values (precision_operands.h; expertGemm
//               says F32Simt).
//   backward    tensor-core path (both low modes): the bf16 GEMMs of grouped_gemm_bf16_backward.h
//               on the same padded layout, every operand a bf16 value (straight-through for fp8):
//                 g = bf16(dy)[token] · w2            NN (unweighted, as cpu::Experts)
//                 dW2 += bf16(weight·dy)ᵀ · bf16(h)   TN
//                 da1, da3 = bf16 of the activation's backward at weight·g (packActivationBackward)
//                 dxp = da1 · w1 (+ da3 · w3)         NN
//                 dW1 += da1ᵀ · bf16(x), dW3 likewise TN
//               The TN products land in a padded [Eg, Np, Kp] scratch whose [N, K] part is added
//               to the staged accumulator once per element (addUnpackedRows). F32 mode and the
//               F32Simt fp8 fallback: the f32 SIMT GEMMs, fed the same bf16 values in the latter.
// Inner dimensions the tensor-core kernels cannot take (H or Fg not a multiple of 8 for bf16, of
// 16 for fp8) are padded with zero columns on the device, in the activations and the weights
// alike: zeros change no sum and no fp8 block amax, so every shape takes the tensor-core path.
// bf16·bf16 and e4m3·e4m3 products are exact in fp32, so the tensor-core results equal the CPU's
// f32 GEMMs over the same operand values up to the order of the fp32 sums (and, for fp8, the
// per-128 block promotion of grouped_gemm_fp8.h).
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
#include "device_buffer.h"
#include "expert_gemm.h"
#include "staging.h"
#include "permute.h"

namespace moekit::cuda {

class Experts : public ExpertStage {
 public:
  // Throws Error(Argument/Shape) on a non-positive size, no group, or a missing weight; then
  // Error(Device) when the stream or the operand buffers cannot be created on the current device.
  // The DEVICE weight and gradient buffers are borrowed: they must outlive every forward/backward.
  // precision: F32/Same by default; Fp8 experts need Bf16 compute (Error(Argument) otherwise).
  Experts(int hidden, Activation act, std::vector<ExpertGroup> groups, Precision precision = {});
  Experts(const Experts&) = delete;
  Experts& operator=(const Experts&) = delete;

  // x [T,H]; n assignments token[a] in [0,T), expert[a] in [0,E), weight[a]. y [T,H] is ADDED
  // to. n = 0 leaves y alone. x and y on the device; token, expert, weight on the host.
  void forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
               const float* weight, float* y) override;

  // dy [T,H] of the last forward. Adds into dx [T,H] and the group gradient buffers; writes
  // dWeight[a] = dy_t · E_e(x_t) (fp32 sum). dx and dWeight may be null; all on the device. One
  // backward per forward: it releases what the forward kept for it.
  void backward(const float* dy, float* dx, float* dWeight) override;

  // 2·rows_e·H·Fg·(3 for swiglu, else 2) of the last forward; 0 before the first forward.
  int64_t flops(int expert) const override;

  int experts() const { return E_; }
  int hidden() const { return H_; }
  Activation activation() const { return act_; }
  Precision precision() const { return precision_; }
  // The forward's GEMMs, expertGemm(precision, the device current at construction).
  ExpertGemm gemm() const { return gemm_; }
  // Rows each expert received in the last forward ([E]).
  const std::vector<int32_t>& counts() const { return counts_; }

 private:
  // A weight [Eg, N, K] as the tensor-core GEMMs read it: bf16 bits [Eg, Np, Kp] (both modes; the
  // forward reads the first N rows of each expert's block, the backward all Np), and for fp8 e4m3
  // codes [Eg·N, Kp] with their 128×128 block scales [Eg, ⌈N/128⌉, ⌈K/128⌉]. Np, Kp = N, K rounded
  // up to innerAlign(); the padding rows and columns are zeros (the bf16 ones set once, at
  // construction, and never written again).
  struct TensorCoreWeight {
    DeviceBuffer<uint16_t> bf16;
    DeviceBuffer<uint8_t> codes;
    DeviceBuffer<float> scales;
  };

  struct GroupState {
    int firstExpert = 0;
    int64_t firstRow = 0, rows = 0;  // of the last forward, in permuted order
    int64_t activationOffset = 0;    // first element of the group in a1/a3/h/da1/da3
    int64_t paddedRows = 0;          // of the last tensor-core forward: the group's padded layout
    // Low-precision modes: the weights as the backward reads them (bf16 values), and as the f32
    // SIMT fp8 forward reads them (e4m3 block values).
    DeviceBuffer<float> w1b, w3b, w2b, w1f, w3f, w2f;
    TensorCoreWeight w1t, w3t, w2t;  // the tensor-core GEMMs' operands
    // Row e·N + i of a weight [Eg·N, ·] → row e·Np + i of its bf16 operand: N = Fg (w1, w3), H (w2).
    DeviceBuffer<int32_t> weightRowsF, weightRowsH;
    // The write counters (ExpertGroup::w*Version) of the weights the derived operands above were
    // built from; UINT64_MAX = none built yet.
    uint64_t w1Seen = UINT64_MAX, w3Seen = UINT64_MAX, w2Seen = UINT64_MAX;
  };

  // The group's weights as the f32 SIMT forward GEMMs read them (the low modes fill w*b and w*f).
  void forwardWeights(size_t group, const float*& w1, const float*& w3, const float*& w2);
  // The expert GEMMs of a forward (gemm_), from the permuted rows xp_ into the rows yp_, leaving
  // a1_, a3_, h_ and the low modes' backward operands (bf16 xp_, h_ and w*b) for the backward.
  void forwardSimt(int n);
  void forwardTensorCore(int n);
  // The multiple the tensor-core GEMMs' inner dimensions are padded to: 8 (bf16), 16 (fp8).
  int innerAlign() const;
  // Back to the pool: the forward's scratch (at its end), and the backward's scratch with the
  // activations the forward kept for it (at the backward's end). What stays between steps is the
  // weights' low-precision operands and their row maps.
  void releaseForwardScratch();
  void releaseBackward();
  // Constructor, tensor-core path: the zeroed bf16 weight operands and the weight row maps.
  void allocateTensorCoreWeights();
  // The group's weights as the tensor-core GEMMs read them (w*t), from the f32 masters.
  void tensorCoreWeights(size_t group);
  // The expert GEMMs of a backward from the weighted dy rows dyp_ (and, tensor-core, dy [T,H]
  // bf16-rounded), adding into the group gradients; dxp [n,H] written when not null.
  void backwardSimt(float* dxp);
  void backwardTensorCore(const float* dy, float* dxp);

  int H_ = 0, E_ = 0;
  Activation act_;
  Precision precision_;
  ExpertGemm gemm_ = ExpertGemm::F32Simt;
  std::vector<ExpertGroup> groups_;
  std::vector<GroupState> state_;
  StagingStream stream_{"cuda::Experts"};

  // The last forward; saved_: its activations are held for one backward (released by it).
  bool haveForward_ = false, saved_ = false;
  int T_ = 0, n_ = 0;
  int64_t activations_ = 0;                // Σ_g rows_g·Fg: elements of a1/a3/h/da1/da3
  std::vector<int32_t> counts_, offsets_;  // HOST [E], [E+1]

  // Device buffers (grown as needed). Assignments: [n]; rows: [n] in permuted order.
  DeviceBuffer<float> weight_, xp_, yp_, rowWeight_;
  DeviceBuffer<int32_t> token_, expert_, rowAssignment_, rowToken_, expertStart_;
  DeviceBuffer<int32_t> tokenRows_, tokenStart_;  // rows of each token, ascending; [T+1]
  DeviceBuffer<float> a1_, a3_, h_;               // pre-activations and activations, all groups
  DeviceBuffer<float> dy_, dyp_, dxp_, da1_, da3_;  // dy_: bf16-rounded dy (low modes)
  SortScratch sort_;
  DeviceBuffer<float> xpf_, hf_;  // f32 SIMT fp8 forward: its x rows and h
  DeviceBuffer<uint8_t> fp8Codes_;
  DeviceBuffer<float> fp8Scales_;
  // Tensor-core forward. paddedStart_: HOST [E+1], each expert's first row in its group's padded
  // layout; paddedRow_: [n] the padded row of each permuted row. The rest is per-group scratch
  // (the groups run one after another on the stream): the A operand [padded rows, Kp] as bf16
  // bits or e4m3 codes with its scales [padded rows, ⌈K/128⌉], the GEMM outputs in the padded
  // layout, and the fp8 mode's compact codes (and scales) of x, h and the weights before they are
  // packed.
  std::vector<int32_t> paddedStart_;
  DeviceBuffer<int32_t> paddedStartDevice_, paddedRow_;
  DeviceBuffer<uint16_t> aBf16_;
  DeviceBuffer<uint8_t> aCodes_, xCodes_, hCodes_, wCodes_;
  DeviceBuffer<float> aScales_, xScales_, hScales_;
  DeviceBuffer<float> a1Pad_, a3Pad_, hPad_, yPad_;
  // Tensor-core backward: dy rows unweighted (compact [n,H]); per-group scratch in the padded
  // layout: the bf16 operands [padded rows, Hp] and [padded rows, Fp], g = dy·w2, dxp, and one
  // weight gradient [Eg, Np, Kp].
  DeviceBuffer<float> dyRows_;
  DeviceBuffer<uint16_t> operandH_, operandF1_, operandF3_;
  DeviceBuffer<float> gPad_, dxPad_, dwPad_;
};

}  // namespace moekit::cuda
