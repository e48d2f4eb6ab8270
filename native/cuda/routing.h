// Top-k routing decisions (DESIGN R1–R8, R10) on a CUDA device: logits, scores, selection keys,
// group limiting, top-k and weights of every token, with the row math of core/routing.h (the
// very functions cpu::Router calls), so that the decisions and weights equal cpu::Router's.
//
// Scope of this version: the routing decisions only — no capacity (C1–C5), no losses, no stats, no
// window / load / bias updates, no backward. Types TopK, Affinity (R8 cosine logits) and Sampled
// (R10); ExpertChoice is not handled (Error(Argument)).
//
// Memory — HOST-STAGED: every pointer is HOST memory. routeTopK uploads its inputs into device
// buffers it allocates for the call, runs the kernels on a stream of its own, downloads the results
// and synchronises before returning.
//
// Equality with cpu::Router: on the SIMT emulator bit for bit (same source, same libm). On a real
// device exp/log are CUDA's double-precision libm (≤ 1–2 ulp from glibc) and nvcc may contract
// a·b + c into an FMA, so scores and keys may differ in the last bits there (and a near-tie may
// then rank differently).
#pragma once

#include <cstdint>
#include <vector>

#include "../layer/stage_types.h"

namespace moekit::cuda {

struct TopKRouting {
  int tokens = 0, k = 0, experts = 0;
  std::vector<int32_t> indices;  // [T,k] R6 order (best first, ties → lower index)
  std::vector<float> weights;    // [T,k] R7, float(w) as cpu::Router's Routing.weights
  std::vector<double> scores;    // [T,E] R3 s
};

// x [T,H] f32; weight [E,H] f32 (router.weight); bias [E] (read when spec.useBias, else may be
// null); load [E] (R10 ℓ, required for Sampled, else ignored); allowed [T,E] u8 R2 mask (null =
// every expert allowed; each row must allow at least topK experts); step = the R10 step
// (cpu::Router::step() before its forward). Fields of spec read: hidden, groupSizes (E), type,
// topK, score, normalize, scale, limitGroups, limitTopGroups, useBias, temperature, loadPenalty,
// seed. Throws Error(Argument) on a missing input or when a token has fewer than topK finite keys
// (message of cpu::Router), Error(Device) when a CUDA call fails.
void routeTopK(const RouterSpec& spec, const float* x, int T, const float* weight,
               const float* bias, const float* load, const uint8_t* allowed, uint64_t step,
               TopKRouting& out);

}  // namespace moekit::cuda
