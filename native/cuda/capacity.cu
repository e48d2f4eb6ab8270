// cuda::applyCapacity (capacity.h): C4 minimum affinity, then C1 capacity with C2 position, C3 score
// or C5 reroute, equal to cpu::Router::applyCapacity. A slot a = t·k + j is token t's j-th choice.
//
//   keepAboveAffinityKernel  thread = slot a: keep[a] = (idx[a] in [0, E) and not cos[t, idx[a]] <
//                            minAffinity) (C4); for C2/C3 also kept[e] += 1 (integer atomics).
// C2 and C3 are one selection: expert e keeps the C best of its kept slots by a key, where C3's key
// is capacity::rankKey(s[t,e], a) (higher score, ties → earlier slot) and C2's is the slot order
// alone (hi = 0, lo = ~a: the C earliest slots; only the 4 passes over lo run).
//   candidateStartsKernel    thread = expert e: start[e] = cursor[e] = Σ_{e' < e} kept[e'] (O(E)
//                            per thread; E is at most a few hundred).
//   scatterCandidatesKernel  thread = slot: a kept slot goes to candidates[atomicAdd(cursor[e])];
//                            the order inside an expert's run varies, the set does not, and the
//                            selection below depends only on the set.
//   keepBestKernel           block = expert e (256 threads): when kept[e] > C, selectKth
//                            (block_select.cuh) finds the C-th best key over the expert's run and
//                            every slot below it is dropped.
// C5 is sequential by definition (each token's decisions depend on the `used` counts left by the
// tokens before it), so it runs on ONE warp:
//   rerouteKernel            lanes walk the slots together in token order; a choice whose expert
//                            has room takes it (lane 0 writes); a full one asks the warp for the
//                            best eligible expert of the token in q order — each lane scans the
//                            experts e ≡ lane (mod 32) with capacity::ranksHigher (higher q, ties
//                            → lower id, as routing::nextInKeyOrder), then a __shfl_xor_sync
//                            butterfly picks the best of the lanes. O(T·k + overflows·E/32) steps,
//                            latency-bound: correctness first; the rest of the layer is parallel.
#include "capacity.h"

#include <climits>
#include <string>

#include "../core/capacity.h"
#include "block_select.cuh"
#include "emu/launch.h"
#include "grid.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;  // grids stride beyond this
constexpr unsigned kFullWarp = 0xffffffffu;

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

unsigned blocksFor(int64_t count) { return gridBlocks(count, kThreads, kMaxBlocks); }

// C4; kept null = no per-expert count.
__global__ void keepAboveAffinityKernel(int64_t slots, int k, int E, const int32_t* idx,
                                        const double* cos, double minAffinity, int32_t* keep,
                                        int32_t* kept) {
  for (int64_t a = globalThread(); a < slots; a += gridThreads()) {
    const int e = idx[a];
    const bool valid = e >= 0 && e < E;
    const bool ok = valid && !(cos && cos[(a / k) * E + e] < minAffinity);
    keep[a] = ok;
    if (ok && kept) atomicAdd(&kept[e], 1);
  }
}

__global__ void candidateStartsKernel(int E, const int32_t* kept, int32_t* start, int32_t* cursor) {
  const int e = int(globalThread());
  if (e >= E) return;
  int32_t sum = 0;
  for (int i = 0; i < e; ++i) sum += kept[i];
  start[e] = cursor[e] = sum;
}

__global__ void scatterCandidatesKernel(int64_t slots, const int32_t* idx, const int32_t* keep,
                                        int32_t* cursor, int32_t* candidates) {
  for (int64_t a = globalThread(); a < slots; a += gridThreads())
    if (keep[a]) candidates[atomicAdd(&cursor[idx[a]], 1)] = int32_t(a);
}

// s null = C2 (slot order), else C3 (s[t, e], ties → earlier slot).
__global__ void __launch_bounds__(kThreads)
    keepBestKernel(int k, int E, int64_t C, const double* s, const int32_t* kept,
                   const int32_t* start, const int32_t* candidates, int32_t* keep) {
  const int e = int(blockIdx.x);
  const int n = kept[e];
  if (n <= C) return;
  const int32_t* run = candidates + start[e];
  const auto keyOf = [&](int i, capacity::RankKey& key) {
    const int32_t a = run[i];
    key = s ? capacity::rankKey(s[int64_t(a / k) * E + e], a) : capacity::RankKey{0, ~uint32_t(a)};
    return true;
  };
  const capacity::RankKey threshold =
      selectKth(n, C, s ? 0 : kSelectPasses - kSelectLoPasses, keyOf);
  for (int i = int(threadIdx.x); i < n; i += int(blockDim.x)) {
    capacity::RankKey key;
    keyOf(i, key);
    if (!capacity::atLeast(key, threshold)) keep[run[i]] = 0;
  }
}

// The token's best expert in q order (R6 order) that is neither chosen (in row or selected), nor
// full, nor below minAffinity; −1 when none. Every lane returns the same expert.
__device__ int bestFallback(int E, int k, int64_t C, const double* q, const double* cos,
                            double minAffinity, const int32_t* row, const int32_t* selected,
                            const int32_t* used) {
  int best = -1;
  double bestKey = 0;
  for (int e = int(threadIdx.x); e < E; e += 32) {
    const double key = q[e];
    if (!(key > -INFINITY)) continue;  // also skips NaN, as nextInKeyOrder
    if (used[e] >= C || (cos && cos[e] < minAffinity)) continue;
    bool chosen = false;
    for (int j = 0; j < k && !chosen; ++j) chosen = row[j] == e || selected[j] == e;
    if (chosen) continue;
    if (best < 0 || capacity::ranksHigher(key, e, bestKey, best)) {
      best = e;
      bestKey = key;
    }
  }
  for (int mask = 16; mask > 0; mask >>= 1) {
    const int other = __shfl_xor_sync(kFullWarp, best, mask);
    const double otherKey = __shfl_xor_sync(kFullWarp, bestKey, mask);
    if (other >= 0 && (best < 0 || capacity::ranksHigher(otherKey, other, bestKey, best))) {
      best = other;
      bestKey = otherKey;
    }
  }
  return best;
}

// One warp. used [E] scratch.
__global__ void __launch_bounds__(32)
    rerouteKernel(int T, int E, int k, int64_t C, const int32_t* selIdx, const double* q,
                  const double* cos, double minAffinity, int32_t* idx, int32_t* keep,
                  int32_t* used) {
  const int lane = int(threadIdx.x);
  for (int e = lane; e < E; e += 32) used[e] = 0;
  __syncwarp();
  for (int t = 0; t < T; ++t) {
    int32_t* row = idx + int64_t(t) * k;
    const int32_t* selected = selIdx + int64_t(t) * k;
    const double* qt = q + int64_t(t) * E;
    const double* cosT = cos ? cos + int64_t(t) * E : nullptr;
    for (int j = 0; j < k; ++j) {
      const int64_t slot = int64_t(t) * k + j;
      if (!keep[slot]) continue;  // dropped by C4: keeps its expert, takes no capacity
      const int current = row[j];
      const int to = used[current] < C
                         ? current
                         : bestFallback(E, k, C, qt, cosT, minAffinity, row, selected, used);
      __syncwarp();  // every lane has read row and used before lane 0 changes them
      if (lane == 0) {
        if (to < 0) {
          keep[slot] = 0;
        } else {
          row[j] = to;
          ++used[to];
        }
      }
      __syncwarp();
    }
  }
}

void checkCapacityLaunch(cudaError_t err, const char* kernel) {
  checkCuda(err, std::string("cuda::applyCapacity: launch of ") + kernel);
}

void requirePointer(const void* p, const char* name, const char* expected) {
  if (!p)
    fail(ErrorKind::Argument, std::string("applyCapacity: ") + name + ": expected " + expected +
                                  ", got null");
}

}  // namespace

void applyCapacity(const CapacityArgs& a, const int32_t* selIdx, const double* s, const double* q,
                   const double* cos, int32_t* idx, int32_t* keep, CapacityScratch& scratch,
                   cudaStream_t stream) {
  using Policy = RouterSpec::Policy;
  const auto str = [](int64_t v) { return std::to_string(v); };
  if (a.E < 1)
    fail(ErrorKind::Shape, "applyCapacity: E: expected a positive expert count, got " + str(a.E));
  if (a.k < 1 || a.k > a.E)
    fail(ErrorKind::Shape,
         "applyCapacity: k: expected an integer in [1, " + str(a.E) + "], got " + str(a.k));
  if (a.T < 0)
    fail(ErrorKind::Shape, "applyCapacity: T: expected a non-negative token count, got " + str(a.T));
  if (int64_t(a.T) * a.k > INT32_MAX)
    fail(ErrorKind::Shape, "applyCapacity: T·k: expected at most 2^31 − 1 slots, got " +
                               str(int64_t(a.T) * a.k));
  if (a.capacity < 0)
    fail(ErrorKind::Argument,
         "applyCapacity: capacity: expected a non-negative count (0 = no limit), got " +
             str(a.capacity));
  if (a.policy != Policy::Position && a.policy != Policy::Score && a.policy != Policy::Reroute)
    fail(ErrorKind::Argument, "applyCapacity: policy: expected Position, Score or Reroute, got " +
                                  str(int64_t(a.policy)));
  if (a.T == 0) return;
  requirePointer(selIdx, "selIdx", "a [T,k] i32 device buffer");
  requirePointer(idx, "idx", "a [T,k] i32 device buffer");
  requirePointer(keep, "keep", "a [T,k] i32 device buffer");
  const bool limited = a.capacity > 0;
  if (limited && a.policy == Policy::Score)
    requirePointer(s, "s", "a [T,E] f64 device buffer (policy Score ranks by it)");
  if (limited && a.policy == Policy::Reroute)
    requirePointer(q, "q", "a [T,E] f64 device buffer (policy Reroute moves down its order)");

  const int64_t slots = int64_t(a.T) * a.k;
  const bool select = limited && a.policy != Policy::Reroute;
  int32_t* kept = nullptr;
  if (select) {
    kept = scratch.kept.reserve(size_t(a.E), "capacity: kept per expert");
    checkCuda(cudaMemsetAsync(kept, 0, size_t(a.E) * sizeof(int32_t), stream),
              "cuda::applyCapacity: cudaMemsetAsync of kept");
  }
  checkCapacityLaunch(launch<keepAboveAffinityKernel>(dim3(blocksFor(slots)), dim3(kThreads), 0, stream,
                                              slots, a.k, a.E, idx, cos, a.minAffinity, keep, kept),
              "keepAboveAffinityKernel");
  if (!limited) return;

  if (a.policy == Policy::Reroute) {
    int32_t* used = scratch.used.reserve(size_t(a.E), "capacity: used per expert");
    checkCapacityLaunch(launch<rerouteKernel>(dim3(1), dim3(32), 0, stream, a.T, a.E, a.k, a.capacity,
                                      selIdx, q, cos, a.minAffinity, idx, keep, used),
                "rerouteKernel");
    return;
  }
  int32_t* start = scratch.start.reserve(size_t(a.E), "capacity: candidate starts");
  int32_t* cursor = scratch.cursor.reserve(size_t(a.E), "capacity: candidate cursors");
  int32_t* candidates = scratch.candidates.reserve(size_t(slots), "capacity: candidates");
  checkCapacityLaunch(launch<candidateStartsKernel>(dim3(blocksFor(a.E)), dim3(kThreads), 0, stream, a.E,
                                            kept, start, cursor),
              "candidateStartsKernel");
  checkCapacityLaunch(launch<scatterCandidatesKernel>(dim3(blocksFor(slots)), dim3(kThreads), 0, stream,
                                              slots, idx, keep, cursor, candidates),
              "scatterCandidatesKernel");
  checkCapacityLaunch(launch<keepBestKernel>(dim3(unsigned(a.E)), dim3(kThreads), 0, stream, a.k, a.E,
                                     a.capacity, a.policy == Policy::Score ? s : nullptr, kept,
                                     start, candidates, keep),
              "keepBestKernel");
}

}  // namespace moekit::cuda
