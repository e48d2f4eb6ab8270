// The vocabulary shared by the layer and every backend (DESIGN §3): the router's flat spec and
// its per-forward decisions, and the expert groups' weights. Backends implement the stages of
// stages.h over these types; nothing here depends on where the memory lives.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/losses.h"
#include "../core/routing.h"

namespace moekit {

enum class Activation { Swiglu, Gelu, Relu };

// Numerics of the expert GEMMs (DESIGN §2 precision; core/precision.h holds the rounding):
//   F32          f32 operands, f32 accumulation
//   Bf16         every expert GEMM, forward and backward, takes RNE-bf16 operands (x rows,
//                weights, h, dy, the activation's gradients) and accumulates in f32; master
//                weights, cached activations and gradients stay f32
//   Bf16 + Fp8   the forward GEMMs take x and h in 1×128 and the weights in 128×128 e4m3 blocks
//                with f32 scales (F2, F3); the backward is the Bf16 one (straight-through)
// The router is f32/float64 in every mode.
struct Precision {
  enum class Compute { F32, Bf16 } compute = Compute::F32;
  enum class Experts { Same, Fp8 } experts = Experts::Same;
};

struct ExpertGroup {  // one group's weights and gradient accumulators
  int count = 0, ffn = 0;  // Eg, Fg
  const float* w1 = nullptr;  // [Eg,Fg,H]
  const float* w3 = nullptr;  // [Eg,Fg,H] swiglu only (ignored otherwise)
  const float* w2 = nullptr;  // [Eg,H,Fg]
  // Write counters of w1 / w3 / w2 (the storage versions of cuda tensors): a stage may keep what it
  // derives from a weight (its bf16 / fp8 operands) while its counter is unchanged. Null: the
  // weight may change at any time, and derived operands are rebuilt at every forward.
  const uint64_t* w1Version = nullptr;
  const uint64_t* w3Version = nullptr;
  const uint64_t* w2Version = nullptr;
  // Added to by backward; a null accumulator is skipped (frozen weights, inference).
  float* g1 = nullptr;
  float* g3 = nullptr;
  float* g2 = nullptr;
};

struct RouterSpec {  // flat, validated again by Router's constructor
  int hidden = 0;
  std::vector<int> groupSizes;     // experts per group, router order; E = sum
  std::vector<int> groupModality;  // per group; −1 = accepts every token
  enum class Type { TopK, Affinity, ExpertChoice, Sampled } type = Type::TopK;
  int topK = 1;
  using Score = routing::ScoreFn;  // Softmax, Sigmoid (affinity always uses softmax, R8)
  Score score = Score::Softmax;
  bool normalize = false;
  double scale = 1.0;
  int limitGroups = 0, limitTopGroups = 0;  // R5; 0 = off
  bool useBias = false;                     // R4 / B1
  double biasUpdateRate = 0.001;
  double temperature = 1.0, minAffinity = -INFINITY;  // R8, C4
  double loadPenalty = 1.0, loadDecay = 0.1;          // R10
  double capacityFactor = 0;                          // C1; 0 = dropless (expert-choice: 0 → 1)
  enum class Policy { Position, Score, Reroute } policy = Policy::Position;
  double balanceCoeff = 0;  // 0 = no balance loss (never for expert-choice, R9)
  enum class Scope { Micro, Sequence, Global } scope = Scope::Micro;
  double balanceMicroFraction = 0;  // Global scope: adds L1 micro at balanceCoeff·this (0 = off)
  double zCoeff = 0;
  double orthCoeff = 0;
  using Orth = OrthMode;  // All, PerGroup, CrossGroup
  Orth orthMode = Orth::All;
  uint64_t seed = 0;  // R10 Philox key (low 32 bits)
};

struct RouterParams {
  const float* weight;  // [E,H]
  float* bias;          // [E] state; may be null unless useBias
  float* load;          // [E] state ℓ (R10), initialised to 1/E by the owner; required for
                        // `sampled`, updated in place by every forward when not null
};

struct Routing {  // one forward's decisions
  int tokens = 0, k = 0;
  // [T,k] top-k types only (empty for expert-choice): final experts (R6, or C5 after rerouting),
  // keep = 1 when the slot survived capacity (C2–C5), weights = R7 over the final experts; a dropped
  // slot keeps its weight but contributes nothing (it is not an assignment).
  std::vector<int32_t> indices, keep;
  std::vector<float> weights;
  // Kept assignments: token-major (t, then j) for top-k; expert-major (e, then token ascending) for
  // expert-choice, whose weight is s[t,e] (R9).
  std::vector<int32_t> assignToken, assignExpert;
  std::vector<float> assignWeight;
  // [E] counts = R6 selections (what the balance losses use; expert-choice: tokens taken),
  // accepted = kept final assignments per expert (C5).
  std::vector<int32_t> counts, accepted;
  double balance = 0, z = 0, orthogonality = 0, aux = 0;  // loss values (aux = their sum)
  // ExpertStats (Monitoring), over all experts: f_i = counts_i/(T·k), P_i = mean_t s̃[t,i],
  // maxVio = max(c)/mean(c) − 1, cv = std(c)/mean(c), entropy = −Σ p log p / log E with p = c/Σc.
  std::vector<double> f, P;
  double maxVio = 0, cv = 0, entropy = 0;
  // indices, keep, weights and the assignment lists in device memory, when the router keeps them
  // there (the CUDA router; null on the CPU), so the layer's result tensors are device copies.
  // Valid until the router's next forward or backward.
  struct DeviceArrays {
    const int32_t* indices = nullptr;
    const int32_t* keep = nullptr;
    const float* weights = nullptr;
    const int32_t* assignToken = nullptr;
    const int32_t* assignExpert = nullptr;
    const float* assignWeight = nullptr;
  } device;
};

}  // namespace moekit
