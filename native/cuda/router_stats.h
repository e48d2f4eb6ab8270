// The router's per-forward bookkeeping on a CUDA device: selection counts (R6) and accepted
// counts (C5), ExpertStats (DESIGN Monitoring), the R10 load EWMA and the B1 bias update. Kernels
// and their thread mappings: router_stats.cu. The CPU oracle is cpu::Router (forward's counts and
// accepted, fillStats, the load update at the end of forward, endStep).
//
// Every pointer is DEVICE memory unless said HOST; the work is enqueued on `stream` (nothing
// synchronises). Throws Error(Shape/Argument) naming the argument before enqueuing anything,
// Error(Device) naming the kernel when a launch fails. Results are the same on every run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace moekit::cuda {

// counts [E] (overwritten) = number of slots a of sel [T,k] with sel[a] == e and, when keep is not
// null, keep[a] == 1. With sel = the R6 selection and keep null: Routing.counts; with sel = the
// final experts and keep: Routing.accepted. Entries outside [0, E) are not counted.
void countSelections(int T, int k, int E, const int32_t* sel, const int32_t* keep,
                     int32_t* counts, cudaStream_t stream);

// ExpertStats as cpu::Router::fillStats, from s [T,E] (R3 scores) and counts [E]: f [E] = counts /
// (T·k) (0 when T = 0; bit-equal); P [E] = mean over tokens of s̃ (s̃ = s for softmax, s/Σ_e s for
// sigmoid, rows with Σ = 0 skipped); out3 = {maxVio, cv, entropy} = {max(c)/mean(c) − 1,
// std(c)/mean(c), −Σ p log p / log E with p = c/Σc} (all 0 when Σc = 0; entropy 1 when E = 1).
// k = the topK used for f. P, cv and entropy are sums taken in a fixed order that differs from the
// CPU's loop: within a few ulps of it (relative 1e-12 and better), identical from run to run.
void expertStats(int T, int E, int k, bool sigmoid, const double* s, const int32_t* counts,
                 double* f, double* P, double* out3, cudaStream_t stream);

// R10: load[e] = capacity::loadEwma(decay, load[e], f[e]) for e in [0, E): f32 load in place,
// bit-equal to cpu::Router's update (the caller skips it for T = 0, as the CPU does).
void updateLoad(int E, double decay, const double* f, float* load, cudaStream_t stream);

// B1 over the expert groups [groupStart[g], groupStart[g+1]) (HOST vector, groupStart[0] = 0,
// increasing): bias[e] = capacity::biasStep(bias[e], rate, mean over e's group of c, c[e]) with
// c = windowCounts [E] (i64), bit-equal to cpu::Router::endStep. E = groupStart.back().
void updateBias(const std::vector<int>& groupStart, double rate, const int64_t* windowCounts,
                float* bias, cudaStream_t stream);

}  // namespace moekit::cuda
