// cuda::countSelections, expertStats, updateLoad, updateBias (router_stats.h): the router's
// counts, ExpertStats, R10 load and B1 bias on the device, as cpu::Router computes them.
//
//   countSelectionsKernel  thread = slot (grid-stride): atomicAdd(counts[sel[a]], 1) after a
//                          memset; integer atomics, so the counts are exact and repeatable.
//   meanScoresKernel       block = 32 experts × 8 warps, lane = expert e of the tile, warp w =
//                          tokens t ≡ w (mod 8) in order. Sigmoid: the warp first sums row t
//                          (lanes stride over E, then a __shfl_xor_sync butterfly, which leaves
//                          every lane with the same bits). Each lane adds s[t,e]/Σ/T, the CPU's
//                          term; the 8 warp partials are added in warp order. Fixed order, so
//                          P is the same on every run; it differs from the CPU's token-order sum
//                          by rounding only.
//   countStatsKernel       one block of 256, threads stride over experts: f (the CPU's
//                          expression, bit-equal), then Σc and max c (integers, exact), then
//                          Σ (c − mean)²/E and −Σ p log p, each a shared-memory tree in a fixed
//                          order; thread 0 writes maxVio, cv, entropy.
//   updateLoadKernel       thread = expert: capacity::loadEwma (core/capacity.h).
//   biasGroupKernel        one block per expert group (one launch each; groups are few): Σc of the
//                          group as an integer tree (exact, so mean = Σc/n is the CPU's bits), then
//                          thread = expert: capacity::biasStep.
#include "router_stats.h"

#include <cmath>
#include <string>

#include "../core/capacity.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;  // grids stride beyond this
constexpr int kTileExperts = 32, kTileWarps = 8;
constexpr unsigned kFullWarp = 0xffffffffu;

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

std::string str(int64_t v) { return std::to_string(v); }

unsigned blocksFor(int64_t count) { return gridBlocks(count, kThreads, kMaxBlocks); }

// op over the kThreads values of a block, as a tree in a fixed order; every thread gets the
// result. Called by every thread of a kThreads block.
template <class T, class Op>
__device__ T blockReduce(T v, Op op) {
  __shared__ T buf[kThreads];
  const int tid = int(threadIdx.x);
  buf[tid] = v;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (tid < stride) buf[tid] = op(buf[tid], buf[tid + stride]);
    __syncthreads();
  }
  const T result = buf[0];
  __syncthreads();  // buf may be reused by the next call
  return result;
}

__global__ void countSelectionsKernel(int64_t slots, int E, const int32_t* sel, const int32_t* keep,
                                      int32_t* counts) {
  for (int64_t a = globalThread(); a < slots; a += gridThreads()) {
    const int e = sel[a];
    if (e >= 0 && e < E && (!keep || keep[a])) atomicAdd(&counts[e], 1);
  }
}

__global__ void __launch_bounds__(kTileExperts * kTileWarps)
    meanScoresKernel(int T, int E, bool sigmoid, const double* s, double* P) {
  __shared__ double partial[kTileWarps][kTileExperts];
  const int lane = int(threadIdx.x), warp = int(threadIdx.y);
  const int e = int(blockIdx.x) * kTileExperts + lane;
  double acc = 0;
  for (int t = warp; t < T; t += kTileWarps) {
    const double* row = s + int64_t(t) * E;
    double sum = 1.0;
    if (sigmoid) {
      sum = 0;
      for (int i = lane; i < E; i += kTileExperts) sum += row[i];
      for (int mask = 16; mask > 0; mask >>= 1) sum += __shfl_xor_sync(kFullWarp, sum, mask);
    }
    if (sum > 0 && e < E) acc += row[e] / sum / T;
  }
  partial[warp][lane] = acc;
  __syncthreads();
  if (warp != 0 || e >= E) return;
  double total = partial[0][lane];
  for (int w = 1; w < kTileWarps; ++w) total += partial[w][lane];
  P[e] = total;
}

__global__ void __launch_bounds__(kThreads)
    countStatsKernel(int T, int E, int k, const int32_t* counts, double* f, double* out3) {
  const int tid = int(threadIdx.x);
  int64_t total = 0;
  int32_t maxCount = 0;
  for (int e = tid; e < E; e += kThreads) {
    const int32_t c = counts[e];
    f[e] = T > 0 ? c / (double(T) * k) : 0.0;
    total += c;
    maxCount = c > maxCount ? c : maxCount;
  }
  total = blockReduce(total, [](int64_t a, int64_t b) { return a + b; });
  maxCount = blockReduce(maxCount, [](int32_t a, int32_t b) { return a > b ? a : b; });
  if (total <= 0) {
    if (tid == 0) out3[0] = out3[1] = out3[2] = 0;
    return;
  }
  const double sum = double(total), mean = sum / E;
  double var = 0, entropy = 0;
  for (int e = tid; e < E; e += kThreads) {
    const double c = counts[e];
    var += (c - mean) * (c - mean) / E;
    const double p = c / sum;
    if (p > 0) entropy -= p * std::log(p);
  }
  const auto plus = [](double a, double b) { return a + b; };
  var = blockReduce(var, plus);
  entropy = blockReduce(entropy, plus);
  if (tid != 0) return;
  out3[0] = maxCount / mean - 1;
  out3[1] = std::sqrt(var) / mean;
  out3[2] = E > 1 ? entropy / std::log(double(E)) : 1.0;
}

__global__ void updateLoadKernel(int E, double decay, const double* f, float* load) {
  const int e = int(globalThread());
  if (e < E) load[e] = capacity::loadEwma(decay, load[e], f[e]);
}

__global__ void __launch_bounds__(kThreads)
    biasGroupKernel(int begin, int end, double rate, const int64_t* windowCounts, float* bias) {
  int64_t sum = 0;
  for (int e = begin + int(threadIdx.x); e < end; e += kThreads) sum += windowCounts[e];
  sum = blockReduce(sum, [](int64_t a, int64_t b) { return a + b; });
  const double mean = double(sum) / (end - begin);
  for (int e = begin + int(threadIdx.x); e < end; e += kThreads)
    bias[e] = capacity::biasStep(bias[e], rate, mean, double(windowCounts[e]));
}

void checkLaunch(cudaError_t err, const char* function, const char* kernel) {
  checkCuda(err, std::string("cuda::") + function + ": launch of " + kernel);
}

void requirePointer(const void* p, const char* function, const char* name, const char* expected) {
  if (!p)
    fail(ErrorKind::Argument, std::string(function) + ": " + name + ": expected " + expected +
                                  ", got null");
}

// E ≥ 1, T ≥ 0 and k ≥ 1 (named as in the launcher's signature).
void requireSizes(const char* function, int E, int T = 0, int k = 1) {
  const std::string where = std::string(function) + ": ";
  if (E < 1) fail(ErrorKind::Shape, where + "E: expected a positive expert count, got " + str(E));
  if (T < 0) fail(ErrorKind::Shape, where + "T: expected a non-negative token count, got " + str(T));
  if (k < 1) fail(ErrorKind::Shape, where + "k: expected a positive slot count per token, got " + str(k));
}

}  // namespace

void countSelections(int T, int k, int E, const int32_t* sel, const int32_t* keep,
                     int32_t* counts, cudaStream_t stream) {
  requireSizes("countSelections", E, T, k);
  requirePointer(counts, "countSelections", "counts", "an [E] i32 device buffer");
  if (T > 0) requirePointer(sel, "countSelections", "sel", "a [T,k] i32 device buffer");
  checkCuda(cudaMemsetAsync(counts, 0, size_t(E) * sizeof(int32_t), stream),
            "cuda::countSelections: cudaMemsetAsync of counts");
  if (T == 0) return;
  const int64_t slots = int64_t(T) * k;
  checkLaunch(launch<countSelectionsKernel>(dim3(blocksFor(slots)), dim3(kThreads), 0, stream,
                                            slots, E, sel, keep, counts),
              "countSelections", "countSelectionsKernel");
}

void expertStats(int T, int E, int k, bool sigmoid, const double* s, const int32_t* counts,
                 double* f, double* P, double* out3, cudaStream_t stream) {
  requireSizes("expertStats", E, T, k);
  if (T > 0) requirePointer(s, "expertStats", "s", "a [T,E] f64 device buffer");
  requirePointer(counts, "expertStats", "counts", "an [E] i32 device buffer");
  requirePointer(f, "expertStats", "f", "an [E] f64 device buffer");
  requirePointer(P, "expertStats", "P", "an [E] f64 device buffer");
  requirePointer(out3, "expertStats", "out3", "a [3] f64 device buffer");
  const unsigned tiles = unsigned((E + kTileExperts - 1) / kTileExperts);
  checkLaunch(launch<meanScoresKernel>(dim3(tiles), dim3(kTileExperts, kTileWarps), 0, stream, T, E,
                                       sigmoid, s, P),
              "expertStats", "meanScoresKernel");
  checkLaunch(launch<countStatsKernel>(dim3(1), dim3(kThreads), 0, stream, T, E, k, counts, f, out3),
              "expertStats", "countStatsKernel");
}

void updateLoad(int E, double decay, const double* f, float* load, cudaStream_t stream) {
  requireSizes("updateLoad", E);
  if (!(decay >= 0 && decay <= 1))
    fail(ErrorKind::Argument,
         "updateLoad: decay: expected a number in [0, 1], got " + std::to_string(decay));
  requirePointer(f, "updateLoad", "f", "an [E] f64 device buffer");
  requirePointer(load, "updateLoad", "load", "an [E] f32 device buffer");
  checkLaunch(launch<updateLoadKernel>(dim3(blocksFor(E)), dim3(kThreads), 0, stream, E, decay, f, load),
              "updateLoad", "updateLoadKernel");
}

void updateBias(const std::vector<int>& groupStart, double rate, const int64_t* windowCounts,
                float* bias, cudaStream_t stream) {
  if (groupStart.size() < 2 || groupStart[0] != 0)
    fail(ErrorKind::Argument,
         "updateBias: groupStart: expected [0, …, E] with at least one group, got " +
             str(int64_t(groupStart.size())) + " entries");
  for (size_t g = 1; g < groupStart.size(); ++g)
    if (groupStart[g] <= groupStart[g - 1])
      fail(ErrorKind::Argument, "updateBias: groupStart[" + str(int64_t(g)) +
                                    "]: expected more than groupStart[" + str(int64_t(g - 1)) +
                                    "] = " + str(groupStart[g - 1]) + ", got " + str(groupStart[g]));
  if (!std::isfinite(rate))
    fail(ErrorKind::Argument, "updateBias: rate: expected a finite number, got " + std::to_string(rate));
  requirePointer(windowCounts, "updateBias", "windowCounts", "an [E] i64 device buffer");
  requirePointer(bias, "updateBias", "bias", "an [E] f32 device buffer");
  for (size_t g = 0; g + 1 < groupStart.size(); ++g)
    checkLaunch(launch<biasGroupKernel>(dim3(1), dim3(kThreads), 0, stream, groupStart[g],
                                        groupStart[g + 1], rate, windowCounts, bias),
                "updateBias", "biasGroupKernel");
}

}  // namespace moekit::cuda
