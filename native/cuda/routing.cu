// The routing kernels of routing.h: the row math of core/routing.h on the device. Kernels and
// their thread mappings:
//
//   expertNormsKernel   affinity only: one thread per expert e, wNorm[e] = routing::rowNorm(W_e).
//   tokenNormsKernel    affinity only: one thread per token t, xNorm[t] = routing::rowNorm(x_t)
//                       (the router backward's R8 partials).
//   logitsKernel        one thread per (token t, expert e), flat index t·E + e: l[t,e] =
//                       routing::linearLogitsRow (R1) or routing::cosineLogitsRow (R8) called on
//                       the single row W_e (E = 1), i.e. the same 4-accumulator float64 order as
//                       the CPU's loop over all experts; R8 also stores cos[t,e].
//   selectKernel        one warp per token: warp w of block b owns token t = b·kWarpsPerBlock + w,
//                       lane L owns experts e = L, L + 32, … . The steps of cpu::Router, from the
//                       pieces of core/routing.h:
//                         R3  sigmoid: s[e] = sigmoidScore, per lane. softmax: m = the allowed max
//                             (foldAllowedMax per lane, then an xor-shuffle butterfly of the same
//                             fold: an exact max, order-free), s[e] = softmaxNumerator per lane;
//                             __syncwarp; lane 0 adds the row in expert order 0..E−1 (sumRow, as
//                             scoresRow) and shuffles the sum to every lane, which divides its s[e].
//                         R4/R10  q[e] = biasKey / sampledKey per lane (Philox per expert).
//                         R5  lane g owns groups g, g + 32, …: groupScoreOf (the CPU's serial top-2
//                             of the group, summed in the same order), __syncwarp, groupKept, and
//                             the lane writes −∞ over its dropped groups.
//                         R6  k rounds of warpNextInKeyOrder: each lane takes the best candidate
//                             (followsInKeyOrder, beatsBest) among its experts, then an xor
//                             butterfly keeps the better of two (key, index) pairs. Candidates are
//                             totally ordered (higher key, ties → lower index; −∞/NaN never
//                             candidates), so every lane ends with routing::nextInKeyOrder's pick.
//                       Rows of s, q and the group scores live in global memory (s and q are
//                       outputs, the group scores scratch); a lane reads another lane's entries
//                       only after a __syncwarp. No per-expert array is held in registers.
//   shortTokenKernel    one thread per token t with found[t] < k: atomicMin of (t << 32) | found[t],
//                       so the first such token wins whatever the order.
//   weightsKernel       one warp per token: lane 0 forms the R7 divisor (weightsDivisor, Σ in slot
//                       order) and shuffles it to every lane; lane L writes slots j = L, L + 32, …
//                       (weightOf), rounded once to f32, over the token's final experts (after
//                       capacity, which may reroute).
//
// Equality with cpu::Router: every value is computed by a core/routing.h piece with the same
// operands, the only sums are added in the CPU's order by one lane, and the max / top-k
// reductions are exact comparisons whose result does not depend on the reduction order.
#include "routing.h"

#include <string>

#include "../core/errors.h"
#include "../core/routing.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;  // one token per warp: 8 tokens per block of 256 threads
constexpr unsigned kFullWarp = 0xffffffffu;

__global__ void expertNormsKernel(const float* W, int E, int H, double* wNorm) {
  const int e = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (e >= E) return;
  wNorm[e] = routing::rowNorm(W + int64_t(e) * H, H);
}

__global__ void tokenNormsKernel(const float* x, int T, int H, double* xNorm) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= T) return;
  xNorm[t] = routing::rowNorm(x + int64_t(t) * H, H);
}

// wNorm null → linear logits (R1); else cosine logits over temperature (R8), cos stored when not null.
__global__ void logitsKernel(const float* x, const float* W, const double* wNorm, int T, int E,
                             int H, double temperature, double* cos, double* logits) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(T) * E) return;
  const int64_t t = i / E, e = i % E;
  const float* xt = x + t * H;
  const float* we = W + e * H;
  if (wNorm) {
    double c;
    routing::cosineLogitsRow(xt, we, wNorm + e, H, 1, temperature, &c, logits + i);
    if (cos) cos[i] = c;
  } else {
    routing::linearLogitsRow(xt, we, H, 1, logits + i);
  }
}

// The token a warp owns and the lane within it (one warp per token).
struct WarpToken {
  int t, lane;
};

__device__ __forceinline__ WarpToken warpToken() {
  return {int(blockIdx.x) * kWarpsPerBlock + int(threadIdx.x) / kWarp, int(threadIdx.x) % kWarp};
}

// An expert and its key; e = −1: none.
struct Ranked {
  double key;
  int e;
};

// routing::nextInKeyOrder over q [E] by the whole warp (every lane gets the result).
__device__ Ranked warpNextInKeyOrder(const double* q, int E, double afterKey, int afterIdx,
                                     int lane) {
  Ranked best{0.0, -1};
  for (int e = lane; e < E; e += kWarp)
    if (routing::followsInKeyOrder(q[e], e, afterKey, afterIdx) &&
        routing::beatsBest(q[e], e, best.key, best.e))
      best = {q[e], e};
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const double key = __shfl_xor_sync(kFullWarp, best.key, offset);
    const int e = __shfl_xor_sync(kFullWarp, best.e, offset);
    if (e >= 0 && routing::beatsBest(key, e, best.key, best.e)) best = {key, e};
  }
  return best;
}

// R3 softmax of one row by the warp: s [E] out (see the file comment).
__device__ void warpSoftmaxRow(const double* l, const uint8_t* allowed, int E, int lane,
                               double* s) {
  double m = -INFINITY;
  for (int e = lane; e < E; e += kWarp)
    m = routing::foldAllowedMax(m, l[e], routing::isAllowed(allowed, e));
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    m = routing::foldAllowedMax(m, __shfl_xor_sync(kFullWarp, m, offset), true);
  for (int e = lane; e < E; e += kWarp)
    s[e] = routing::softmaxNumerator(l[e], m, routing::isAllowed(allowed, e));
  __syncwarp();
  double sum = 0;
  if (lane == 0) sum = routing::sumRow(s, E);
  sum = __shfl_sync(kFullWarp, sum, 0);
  for (int e = lane; e < E; e += kWarp) s[e] /= sum;
}

// One warp per token. bias / load / allowed may be null (see routing.h). found[t] = how many
// experts the top-k found (< k: the host reports the token).
__global__ void selectKernel(SelectArgs a, const double* logits, const uint8_t* allowed,
                             const float* bias, const double* load, double* s, double* q,
                             double* groupScore, int32_t* idx, int32_t* found) {
  const WarpToken w = warpToken();
  if (w.t >= a.T) return;  // the whole warp
  const int t = w.t, lane = w.lane, E = a.E;
  const int64_t row = int64_t(t) * E;
  const uint8_t* allowedRow = allowed ? allowed + row : nullptr;
  const double* lt = logits + row;
  double* st = s + row;
  double* qt = q + row;
  if (a.fn == routing::ScoreFn::Sigmoid)
    for (int e = lane; e < E; e += kWarp)
      st[e] = routing::sigmoidScore(lt[e], routing::isAllowed(allowedRow, e));
  else
    warpSoftmaxRow(lt, allowedRow, E, lane, st);
  for (int e = lane; e < E; e += kWarp) {
    const bool ok = routing::isAllowed(allowedRow, e);
    qt[e] = a.sampled ? routing::sampledKey(st[e], load[e], a.penalty, ok, a.seed, a.step, t, e)
                      : routing::biasKey(st[e], bias, e, ok);
  }
  __syncwarp();
  if (a.limitGroups > 0) {
    const int groups = a.limitGroups, n = E / groups;
    double* gs = groupScore + int64_t(t) * groups;
    for (int g = lane; g < groups; g += kWarp) gs[g] = routing::groupScoreOf(qt + g * n, n);
    __syncwarp();
    for (int g = lane; g < groups; g += kWarp)
      if (!routing::groupKept(gs, groups, a.limitTopGroups, g))
        for (int e = g * n; e < (g + 1) * n; ++e) qt[e] = -INFINITY;
    __syncwarp();
  }
  int32_t* it = idx + int64_t(t) * a.k;
  Ranked prev{0.0, -1};
  int picked = 0;
  for (; picked < a.k; ++picked) {
    const Ranked next = warpNextInKeyOrder(qt, E, prev.key, prev.e, lane);
    if (next.e < 0) break;  // the same on every lane
    if (lane == 0) it[picked] = next.e;
    prev = next;
  }
  for (int j = picked + lane; j < a.k; j += kWarp) it[j] = 0;  // defined, never a decision: found < k throws
  if (lane == 0) found[t] = picked;
}

// One warp per token: R7 over idx, float64 scratch wScratch [T,k], rounded once to f32.
__global__ void weightsKernel(int T, int E, int k, bool normalize, double scale, const double* s,
                              const int32_t* idx, double* wScratch, float* weights) {
  const WarpToken w = warpToken();
  if (w.t >= T) return;  // the whole warp
  const int64_t slots = int64_t(w.t) * k;
  const double* st = s + int64_t(w.t) * E;
  double divisor = 0;
  if (w.lane == 0) divisor = routing::weightsDivisor(st, idx + slots, k, normalize);
  divisor = __shfl_sync(kFullWarp, divisor, 0);
  for (int j = w.lane; j < k; j += kWarp) {
    const double weight = routing::weightOf(st[idx[slots + j]], divisor, scale);
    wScratch[slots + j] = weight;
    weights[slots + j] = float(weight);
  }
}

unsigned blocksFor(int64_t n) { return gridBlocks(n, kThreads); }

// Blocks of kWarpsPerBlock warps for one warp per token.
int warpBlocksFor(int T) { return (T + kWarpsPerBlock - 1) / kWarpsPerBlock; }

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

}  // namespace

void expertNorms(const float* W, int E, int H, double* wNorm, cudaStream_t stream) {
  checkCuda(launch<expertNormsKernel>(dim3(blocksFor(E)), dim3(kThreads), 0, stream, W, E, H, wNorm),
            "expertNormsKernel");
}

void tokenNorms(const float* x, int T, int H, double* xNorm, cudaStream_t stream) {
  if (T == 0) return;
  checkCuda(launch<tokenNormsKernel>(dim3(blocksFor(T)), dim3(kThreads), 0, stream, x, T, H, xNorm),
            "tokenNormsKernel");
}

void routerLogits(const float* x, const float* W, const double* wNorm, int T, int E, int H,
                  double temperature, double* cos, double* logits, cudaStream_t stream) {
  const int64_t n = int64_t(T) * E;
  if (n == 0) return;
  checkCuda(launch<logitsKernel>(dim3(blocksFor(n)), dim3(kThreads), 0, stream, x, W, wNorm, T, E,
                                 H, temperature, cos, logits),
            "logitsKernel");
}

void selectExperts(const SelectArgs& a, const double* logits, const uint8_t* allowed,
                   const float* bias, const double* load, double* s, double* q,
                   double* groupScore, int32_t* idx, int32_t* found, cudaStream_t stream) {
  if (a.T == 0) return;
  checkCuda(launch<selectKernel>(dim3(warpBlocksFor(a.T)), dim3(kWarpsPerBlock * kWarp), 0, stream,
                                 a, logits, allowed, bias, load, s, q, groupScore, idx, found),
            "selectKernel");
}

void routingWeights(int T, int E, int k, bool normalize, double scale, const double* s,
                    const int32_t* idx, double* wScratch, float* weights, cudaStream_t stream) {
  if (T == 0) return;
  checkCuda(launch<weightsKernel>(dim3(warpBlocksFor(T)), dim3(kWarpsPerBlock * kWarp), 0, stream, T,
                                  E, k, normalize, scale, s, idx, wScratch, weights),
            "weightsKernel");
}

constexpr int kShortThreads = 128;

__global__ void shortTokenKernel(const int32_t* found, int T, int k, unsigned long long* first) {
  const int64_t t = globalThread();
  if (t < T && found[t] < k) atomicMin(first, (static_cast<unsigned long long>(t) << 32) | unsigned(found[t]));
}

void findShortToken(const int32_t* found, int T, int k, unsigned long long* first, cudaStream_t stream) {
  checkCuda(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), stream), "findShortToken: cudaMemsetAsync");
  if (T == 0) return;
  checkLaunch(launch<shortTokenKernel>(dim3(gridBlocks(T, kShortThreads)), dim3(kShortThreads), 0, stream, found, T, k,
                                       first),
              "shortTokenKernel");
}

void checkFound(unsigned long long first, int k) {
  if (first == ~0ull) return;
  fail(ErrorKind::Argument, "x: token " + std::to_string(first >> 32) + " has " + std::to_string(first & 0xffffffffu) +
                                " experts with a finite selection key, router.topK is " + std::to_string(k) +
                                " (non-finite input or router.weight?)");
}

SelectArgs selectArgsOf(const RouterSpec& spec, int T, int E, uint64_t step) {
  const bool affinity = spec.type == RouterSpec::Type::Affinity;
  SelectArgs a;
  a.T = T;
  a.E = E;
  a.k = spec.topK;
  a.fn = affinity ? routing::ScoreFn::Softmax : spec.score;
  a.sampled = spec.type == RouterSpec::Type::Sampled;
  a.penalty = spec.loadPenalty;
  a.limitGroups = spec.limitGroups > 0 ? spec.limitGroups : 0;
  a.limitTopGroups = spec.limitTopGroups;
  a.seed = spec.seed;
  a.step = step;
  return a;
}

}  // namespace moekit::cuda
