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
// Stages: plan the permutation (dispatch.h) → per group two grouped GEMMs (grouped_gemm.h) with
// the other stages fused into them, so no pass of their own goes over [n,H] or [n,F]:
//   groupedGemmNTActivation  reads x through the row map (the permute in the packing), stores
//                            a1 (and a3) and h = act(a1[, a3]) from each finished tile
//   groupedGemmNTCombine     adds weight · (h·w2ᵀ) into the token's row of y from each finished
//                            tile (the combine in the epilogue; no [n,H] expert output)
// y's elements receive their rows in ascending permuted row order (expert, then token, then
// assignment) on one thread each, so y is bit-identical for any MOEKIT_NUM_THREADS.
// Backward per group: g = dy[token]·w2 (groupedGemmNTCombineBackward, with dW2 from the weighted
// dy rows), one pass over [rows,F] for dWeight = g·h, dh = weight·g and the activation's
// backward, then dx and dW1/dW3 (groupedGemmNTBackward, dx scattered into the token rows).
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
  Experts(int hidden, Activation act, std::vector<ExpertGroup> groups);

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
  // Rows each expert received in the last forward ([E]).
  const std::vector<int32_t>& counts() const { return plan_.counts; }

 private:
  struct GroupCache {  // per group, rows of its experts in permuted order
    int firstExpert = 0;
    int64_t firstRow = 0, rows = 0;
    std::vector<float> a1, a3, h;  // [rows,Fg] pre-activations (a3 swiglu only), activation
  };

  int H_ = 0, E_ = 0;
  Activation act_;
  std::vector<ExpertGroup> groups_;
  std::vector<GroupCache> cache_;

  // The last forward.
  bool haveForward_ = false;
  int T_ = 0;
  PermutationPlan plan_;
  std::vector<float> x_;          // [T,H] the input, read through the row map
  std::vector<float> rowWeight_;  // [n] weight of each permuted row
  // Backward scratch, kept across calls so steady-state steps allocate nothing.
  std::vector<float> da1_, da3_;  // [rows,Fg]; da1_ holds g = dy[token]·w2 first
  std::vector<float> dRowWeight_;  // [n] dWeight in permuted row order
};

}  // namespace moekit::cpu
