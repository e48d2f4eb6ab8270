// Top-k routing decisions (DESIGN R1–R8, R10) on a CUDA device: logits, scores, selection keys,
// group limiting, top-k and weights of every token, with the row math of core/routing.h (the
// very functions cpu::Router calls), so that the decisions and weights equal cpu::Router's.
//
// The stage launchers below take DEVICE pointers and enqueue on `stream`; cuda::Router composes
// them with capacity, losses and stats.
//
// Equality with cpu::Router: on the SIMT emulator bit for bit (same source, same libm). On a real
// device exp/log are CUDA's double-precision libm (≤ 1–2 ulp from glibc) and nvcc may contract
// a·b + c into an FMA, so scores and keys may differ in the last bits there (and a near-tie may
// then rank differently).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "../layer/stage_types.h"

namespace moekit::cuda {

// ---- stage launchers (DEVICE pointers) ---------------------------------------------------------

// R8 norms: wNorm[e] = ‖W_e‖, xNorm[t] = ‖x_t‖ (float64).
void expertNorms(const float* W, int E, int H, double* wNorm, cudaStream_t stream);
void tokenNorms(const float* x, int T, int H, double* xNorm, cudaStream_t stream);

// logits [T,E] f64: R1 x·Wᵀ when wNorm is null, else R8 cos/temperature with cos [T,E] stored
// when not null.
void routerLogits(const float* x, const float* W, const double* wNorm, int T, int E, int H,
                  double temperature, double* cos, double* logits, cudaStream_t stream);

struct SelectArgs {
  int T = 0, E = 0, k = 0;
  routing::ScoreFn fn = routing::ScoreFn::Softmax;  // Softmax for affinity (R8)
  bool sampled = false;                             // R10 keys instead of R4
  double penalty = 1.0;                             // R10 λ
  int limitGroups = 0, limitTopGroups = 0;          // R5; 0 = off
  uint64_t seed = 0, step = 0;                      // R10
};
// The SelectArgs of a validated spec for T tokens over E experts at R10 step `step`.
SelectArgs selectArgsOf(const RouterSpec& spec, int T, int E, uint64_t step);

// R3 → R4/R10 → R5 → R6 per token: s [T,E] scores and q [T,E] keys out, idx [T,k] the selection,
// found [T] how many experts had a finite key (< k: call checkFound). allowed [T,E], bias [E]
// (R4, null = none), load [E] f64 (R10 only) may be null; groupScore [T,limitGroups] scratch.
void selectExperts(const SelectArgs& a, const double* logits, const uint8_t* allowed,
                   const float* bias, const double* load, double* s, double* q,
                   double* groupScore, int32_t* idx, int32_t* found, cudaStream_t stream);

// R7 over idx [T,k]: weights [T,k] f32 (wScratch [T,k] f64 scratch).
void routingWeights(int T, int E, int k, bool normalize, double scale, const double* s,
                    const int32_t* idx, double* wScratch, float* weights, cudaStream_t stream);

// found [T] (R6, selectExperts): *first (DEVICE, one word) = (t << 32) | found[t] of the first token
// t with fewer than k finite keys, or all ones when every token has k. One word comes back to the
// host instead of T.
void findShortToken(const int32_t* found, int T, int k, unsigned long long* first, cudaStream_t stream);
// HOST `first` as findShortToken left it: throws Error(Argument) naming that token.
void checkFound(unsigned long long first, int k);

}  // namespace moekit::cuda
