// Routed (and shared) expert FFNs of DESIGN §3, X1–X2, over a list of weighted assignments.
//
//   X1  swiglu  h = silu(x·w1ᵀ) ⊙ (x·w3ᵀ)      gelu (exact erf) / relu  h = act(x·w1ᵀ)
//       E_e(x) = h·w2ᵀ
//   X2  y_t += Σ_a [token[a] = t] · weight[a] · E_{expert[a]}(x_t)
//
// Experts come in groups of different ffnHidden (heterogeneous experts); global expert e indexes
// the experts of all groups in order. Parameters are in PyTorch nn.Linear orientation:
// w1, w3 [Eg,Fg,H], w2 [Eg,H,Fg]. Shared experts are a second instance with every token assigned
// to each shared expert at weight 1.
//
// Stages: plan the permutation (dispatch.h) → per group (grouped_gemm.h)
//   groupedGemmNT (w1; w3 for swiglu)  reads x through the row map (the permute fused into the
//                                      packing; no [n,H] permuted copy)
//   activation pass                    h = act(a1[, a3]) over [rows,F]
//   groupedGemmNTCombine (w2)          adds weight · (h·w2ᵀ) into the token's row of y from each
//                                      finished tile (the combine fused into the epilogue; no
//                                      [n,H] expert output, no unpermute pass)
// Each element of y receives its rows in ascending permuted row order (expert, then token, then
// assignment) on one thread, so y is bit-identical for any MOEKIT_NUM_THREADS.
// Backward per group: g = dy[token]·w2 (groupedGemmNTCombineBackward, with dW2 from the weighted
// dy rows; no [n,H] dy copy), one pass over [rows,F] for dWeight = g·h, dh = weight·g and the
// activation's backward, then dx and dW1/dW3 (groupedGemmNTBackward, dx scattered into the
// token rows in the same fixed order; no [n,H] dx copy, no permute-backward pass).
//
// Precision (layer/stage_types.h): the same f32 GEMMs fed with the mode's operand values
// (precision_operands.h), products exact in f32, f32 accumulation:
//   Bf16        x, the weights, h, dy and da1/da3 are RNE-rounded to bf16 before every GEMM that
//               reads them; the cached h is the rounded one (dW2 and dWeight read it); dW2 reads
//               bf16(weight·bf16(dy)) rows, so every backward GEMM operand is a bf16 value (the
//               operands of cuda::Experts' tensor-core backward)
//   Bf16 + Fp8  the forward GEMMs read x and h as their 1×128 e4m3 block values and the weights
//               as their 128×128 ones (F2, F3 up to the f32 summation order); the backward is the
//               Bf16 one, with bf16(x), bf16(w) and bf16(h) (straight-through), except dWeight:
// In every mode dWeight[a] = bf16?(dy_t) · E_e(x_t) with E_e the expert output the forward
// computed (the gradient of the y that was returned; cuda::Experts defines it the same way). For
// f32 and bf16, g·h above is that product. For fp8 the forward's output is hf·w2fᵀ (the e4m3
// values), so the backward takes gf = bf16(dy)[token]·w2f (one more NN GEMM, fp8 mode only) and
// dWeight = gf·hf.
#pragma once

#include <cstdint>
#include <vector>

#include "../layer/stages.h"
#include "dispatch.h"

namespace moekit::cpu {



class Experts : public ExpertStage {
 public:
  // Throws Error(Argument/Shape) on a non-positive size, no group, or a missing weight. The
  // weight and gradient buffers are borrowed: they must outlive every forward/backward.
  // precision: F32/Same by default; Fp8 experts need Bf16 compute (Error(Argument) otherwise).
  Experts(int hidden, Activation act, std::vector<ExpertGroup> groups, Precision precision = {});

  // x [T,H]; n assignments token[a] in [0,T), expert[a] in [0,E), weight[a]. y [T,H] is ADDED
  // to. n = 0 (every token dropped) leaves y alone. Keeps what backward needs (x is copied).
  void forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
               const float* weight, float* y) override;

  // dy [T,H] of the last forward. Adds into dx [T,H] and the group gradient buffers; writes
  // dWeight[a] = dObjective/dweight[a] = dy_t · E_e(x_t). dx and dWeight may be null (not wanted).
  void backward(const float* dy, float* dx, float* dWeight) override;

  // Forward FLOPs of global expert e in the last forward, its matmuls only:
  // 2·rows_e·H·Fg·(3 for swiglu, else 2); 0 before the first forward.
  int64_t flops(int e) const override;

  int experts() const { return E_; }
  int hidden() const { return H_; }
  Activation activation() const { return act_; }
  Precision precision() const { return precision_; }
  // Rows each expert received in the last forward ([E]).
  const std::vector<int32_t>& counts() const { return plan_.counts; }

 private:
  struct GroupCache {  // per group, rows of its experts in permuted order
    int firstExpert = 0;
    int64_t firstRow = 0, rows = 0;
    std::vector<float> a1, a3, h;  // [rows,Fg] pre-activations (a3 swiglu only), activation
    // Low-precision modes: the weights as the backward (bf16) and the forward (bf16 or fp8) read
    // them, and fp8's h operand [rows,Fg].
    std::vector<float> w1b, w3b, w2b, w1f, w3f, w2f, hf;
  };

  int H_ = 0, E_ = 0;
  Activation act_;
  Precision precision_;
  std::vector<ExpertGroup> groups_;
  std::vector<GroupCache> cache_;

  // The last forward.
  bool haveForward_ = false;
  int T_ = 0;
  PermutationPlan plan_;
  std::vector<float> x_;          // [T,H] the input (bf16-rounded in the low modes), read through the row map
  std::vector<float> xf_;         // [T,H] fp8 mode: x as the forward GEMM reads it
  std::vector<float> rowWeight_;  // [n] weight of each permuted row
  // Backward scratch, kept across calls so steady-state steps allocate nothing.
  std::vector<float> da1_, da3_;  // [rows,Fg]; da1_ holds g = dy[token]·w2 first
  std::vector<float> dRowWeight_;  // [n] dWeight in permuted row order
  std::vector<float> dyLow_;       // [T,H] bf16(dy) in the low modes
  std::vector<float> dyWeighted_;  // [rows,H] low modes: bf16(weight·dy[token]) of one group
  std::vector<float> gf_;          // [rows,Fg] fp8 mode: bf16(dy)[token]·w2f of one group
};

}  // namespace moekit::cpu
