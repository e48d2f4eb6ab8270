// Dispatch and combine on the device (permute.h): the stable sort behind the row map, permute,
// the weighted combine and unpermute's backward. The CPU reference is native/cpu/dispatch.cc.
//
// Stable sort (stableSortByKey), one LSD radix pass per 8-bit digit d(id) = (key[id] >> shift) & 255
// of the ids in `order`; items are positions p of `order`, cut into chunks of 256:
//   radixRankKernel      block = one chunk, thread = one item (8 warps). rank[p] = number of
//                        earlier items of the chunk with the same digit: within the warp from
//                        __match_any_sync (lanes below with the same digit), across warps from a
//                        [8 warps][256 digits] shared histogram scanned over the warps by thread = digit,
//                        which also writes count[digit·chunks + chunk].
//   exclusiveScanKernel  one block of 1024: count (digit-major, then chunk) → its exclusive scan,
//                        i.e. where each (digit, chunk) run starts in the output. Each thread scans
//                        a contiguous segment serially; segment totals are scanned with warp shuffles.
//   radixScatterKernel   thread = item: out[base[digit, chunk] + rank[p]] = order[p].
// Equal digits keep their order (chunk order, then warp order, then lane order), so k passes from
// the lowest digit up sort stably by the whole key. Only integer counts: the result is exact.
//
// Row maps and data movement (thread = one element unless said):
//   iotaKernel, gatherAssignmentsKernel, segmentStartsKernel (thread = boundary i in [0, n]: writes
//   start[k] for the keys k in (key[i−1], key[i]]), permuteRowsKernel (thread = (r, h), h fastest),
//   addRowsToTokensKernel (thread = (t, h), h fastest: sums its token's rows in row order, one
//   thread per output element, so the order of the sum is fixed), unpermuteBackwardKernel (warp =
//   row r, lanes stride over h; the dot product for dWeight is reduced with __shfl_xor_sync).
#include "permute.h"

#include <string>
#include <utility>

#include "emu/launch.h"
#include "grid.h"

namespace moekit::cuda {

namespace {

constexpr int kRadixBits = 8;
constexpr int kRadix = 1 << kRadixBits;  // digits per pass
constexpr int kChunk = kRadix;           // items per radix chunk = threads per radix block
constexpr int kChunkWarps = kChunk / 32;
constexpr int kScanThreads = 1024;
constexpr int kThreads = 256;            // elementwise kernels
constexpr int64_t kMaxBlocks = 1 << 20;  // elementwise grids stride beyond this

// Blocks of kThreads for `count` elements, grid-striding above kMaxBlocks.
unsigned blocksFor(int64_t count) { return gridBlocks(count, kThreads, kMaxBlocks); }

// ---- stable radix sort -----------------------------------------------------------------------

__global__ void __launch_bounds__(kChunk)
    radixRankKernel(const int32_t* order, const int32_t* key, int shift, int n, int chunks,
                    int32_t* chunkCount, int32_t* rank) {
  __shared__ int32_t warpCount[kChunkWarps][kRadix];  // per warp: count, then exclusive base
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  for (int w = 0; w < kChunkWarps; ++w) warpCount[w][tid] = 0;
  __syncthreads();

  const int p = int(blockIdx.x) * kChunk + tid;
  const bool valid = p < n;
  const int digit = valid ? (key[order[p]] >> shift) & (kRadix - 1) : -1;
  const unsigned peers = __match_any_sync(0xffffffffu, digit);
  const int before = __popc(peers & ((1u << lane) - 1u));
  if (valid && before == 0) warpCount[warp][digit] = __popc(peers);
  __syncthreads();

  int total = 0;  // thread tid = digit tid: scan over the warps
  for (int w = 0; w < kChunkWarps; ++w) {
    const int c = warpCount[w][tid];
    warpCount[w][tid] = total;
    total += c;
  }
  chunkCount[int64_t(tid) * chunks + blockIdx.x] = total;
  __syncthreads();
  if (valid) rank[p] = warpCount[warp][digit] + before;
}

__global__ void __launch_bounds__(kScanThreads) exclusiveScanKernel(int32_t* data, int length) {
  __shared__ int32_t warpTotal[kScanThreads / 32];
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int per = (length + kScanThreads - 1) / kScanThreads;
  const int begin = min(tid * per, length), end = min(begin + per, length);
  int sum = 0;
  for (int i = begin; i < end; ++i) sum += data[i];

  int inclusive = sum;  // warp scan of the segment sums
  for (int d = 1; d < 32; d *= 2) {
    const int up = __shfl_up_sync(0xffffffffu, inclusive, d);
    if (lane >= d) inclusive += up;
  }
  if (lane == 31) warpTotal[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int t = warpTotal[lane];
    for (int d = 1; d < 32; d *= 2) {
      const int up = __shfl_up_sync(0xffffffffu, t, d);
      if (lane >= d) t += up;
    }
    warpTotal[lane] = t;  // inclusive over warps
  }
  __syncthreads();
  int running = inclusive - sum + (warp > 0 ? warpTotal[warp - 1] : 0);
  for (int i = begin; i < end; ++i) {
    const int v = data[i];
    data[i] = running;
    running += v;
  }
}

__global__ void __launch_bounds__(kChunk)
    radixScatterKernel(const int32_t* order, const int32_t* key, int shift, int n, int chunks,
                       const int32_t* chunkStart, const int32_t* rank, int32_t* out) {
  const int p = int(blockIdx.x) * kChunk + int(threadIdx.x);
  if (p >= n) return;
  const int32_t id = order[p];
  const int digit = (key[id] >> shift) & (kRadix - 1);
  out[chunkStart[int64_t(digit) * chunks + blockIdx.x] + rank[p]] = id;
}

// ---- row maps --------------------------------------------------------------------------------

__global__ void iotaKernel(int32_t* order, int n) {
  for (int64_t i = globalThread(); i < n; i += gridThreads()) order[i] = int32_t(i);
}

__global__ void segmentStartsKernel(const int32_t* order, const int32_t* key, int n, int numKeys,
                                    int32_t* start) {
  for (int64_t i = globalThread(); i <= n; i += gridThreads()) {
    const int current = i < n ? key[order[i]] : numKeys;
    const int previous = i > 0 ? key[order[i - 1]] : -1;
    for (int k = previous + 1; k <= current; ++k) start[k] = int32_t(i);
  }
}

__global__ void gatherAssignmentsKernel(const int32_t* rowAssignment, const int32_t* token,
                                        const float* weight, int n, int32_t* rowToken,
                                        float* rowWeight) {
  for (int64_t r = globalThread(); r < n; r += gridThreads()) {
    const int32_t a = rowAssignment[r];
    rowToken[r] = token[a];
    rowWeight[r] = weight[a];
  }
}

// ---- data movement ---------------------------------------------------------------------------

__global__ void permuteRowsKernel(const float* x, int H, const int32_t* rowToken, int n,
                                  float* xp) {
  const int64_t count = int64_t(n) * H;
  for (int64_t i = globalThread(); i < count; i += gridThreads()) {
    const int64_t r = i / H, h = i % H;
    xp[i] = x[int64_t(rowToken[r]) * H + h];
  }
}

__global__ void addRowsToTokensKernel(const float* rows, const float* rowWeight,
                                      const int32_t* tokenStart, const int32_t* tokenRows, int T,
                                      int H, float* out) {
  const int64_t count = int64_t(T) * H;
  for (int64_t i = globalThread(); i < count; i += gridThreads()) {
    const int64_t t = i / H, h = i % H;
    float acc = out[i];
    for (int j = tokenStart[t]; j < tokenStart[t + 1]; ++j) {
      const int64_t r = tokenRows[j];
      const float v = rows[r * H + h];
      acc += rowWeight ? rowWeight[r] * v : v;
    }
    out[i] = acc;
  }
}

__global__ void unpermuteBackwardKernel(const float* dy, int H, const int32_t* rowToken,
                                        const float* rowWeight, const float* yp,
                                        const int32_t* rowAssignment, int n, float* dyp,
                                        float* dWeight) {
  const int lane = int(threadIdx.x) % 32;
  const int64_t warps = gridThreads() / 32;
  for (int64_t r = globalThread() / 32; r < n; r += warps) {  // r is the same on every lane
    const float* g = dy + int64_t(rowToken[r]) * H;
    const float w = rowWeight[r];
    float dot = 0.0f;
    for (int h = lane; h < H; h += 32) {
      dyp[r * H + h] = w * g[h];
      if (dWeight) dot = fmaf(g[h], yp[r * H + h], dot);
    }
    if (dWeight) {
      for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
      if (lane == 0) dWeight[rowAssignment[r]] = dot;
    }
  }
}

}  // namespace

// ---- launchers -------------------------------------------------------------------------------

void fillIota(int32_t* order, int n, cudaStream_t stream) {
  if (n == 0) return;
  checkLaunch(moekit::launch<iotaKernel>(blocksFor(n), kThreads, 0, stream, order, n), "iotaKernel");
}

void stableSortByKey(int32_t* order, const int32_t* key, int keyRange, int n, SortScratch& scratch,
                     cudaStream_t stream) {
  int bits = 0;
  while (bits < 31 && (int64_t(1) << bits) < keyRange) ++bits;  // keys need `bits` bits
  const int passes = (bits + kRadixBits - 1) / kRadixBits;
  if (n <= 1 || passes == 0) return;
  if (n > INT32_MAX - kChunk)  // the chunk counts are indexed by int
    throw Error(ErrorKind::Shape, "stableSortByKey: n must be at most " +
                                      std::to_string(INT32_MAX - kChunk) + ", got " + std::to_string(n));
  const int chunks = (n + kChunk - 1) / kChunk;
  int32_t* other = scratch.other.reserve(size_t(n), "the sort's second order");
  int32_t* rank = scratch.rank.reserve(size_t(n), "the sort's ranks");
  int32_t* count = scratch.chunkCount.reserve(size_t(kRadix) * chunks, "the sort's chunk counts");
  int32_t* in = order;
  int32_t* out = other;
  for (int pass = 0; pass < passes; ++pass) {
    const int shift = pass * kRadixBits;
    checkLaunch(moekit::launch<radixRankKernel>(chunks, kChunk, 0, stream, in, key, shift, n, chunks, count,
                                        rank),
                "radixRankKernel");
    checkLaunch(moekit::launch<exclusiveScanKernel>(1, kScanThreads, 0, stream, count, kRadix * chunks),
                "exclusiveScanKernel");
    checkLaunch(moekit::launch<radixScatterKernel>(chunks, kChunk, 0, stream, in, key, shift, n, chunks,
                                           count, rank, out),
                "radixScatterKernel");
    std::swap(in, out);
  }
  if (in != order)
    checkCuda(copyAsync(order, in, size_t(n) * sizeof(int32_t), cudaMemcpyDeviceToDevice,
                              stream),
              "cudaMemcpyAsync of the sorted order");
}

void segmentStarts(const int32_t* order, const int32_t* key, int n, int numKeys, int32_t* start,
                   cudaStream_t stream) {
  checkLaunch(moekit::launch<segmentStartsKernel>(blocksFor(int64_t(n) + 1), kThreads, 0, stream, order,
                                          key, n, numKeys, start),
              "segmentStartsKernel");
}

void gatherAssignments(const int32_t* rowAssignment, const int32_t* token, const float* weight,
                       int n, int32_t* rowToken, float* rowWeight, cudaStream_t stream) {
  if (n == 0) return;
  checkLaunch(moekit::launch<gatherAssignmentsKernel>(blocksFor(n), kThreads, 0, stream, rowAssignment,
                                              token, weight, n, rowToken, rowWeight),
              "gatherAssignmentsKernel");
}

void permuteRows(const float* x, int H, const int32_t* rowToken, int n, float* xp,
                 cudaStream_t stream) {
  if (n == 0) return;
  checkLaunch(moekit::launch<permuteRowsKernel>(blocksFor(int64_t(n) * H), kThreads, 0, stream, x, H,
                                        rowToken, n, xp),
              "permuteRowsKernel");
}

void addRowsToTokens(const float* rows, const float* rowWeight, const int32_t* tokenStart,
                     const int32_t* tokenRows, int T, int H, float* out, cudaStream_t stream) {
  if (T == 0) return;
  checkLaunch(moekit::launch<addRowsToTokensKernel>(blocksFor(int64_t(T) * H), kThreads, 0, stream, rows,
                                            rowWeight, tokenStart, tokenRows, T, H, out),
              "addRowsToTokensKernel");
}

void unpermuteBackward(const float* dy, int H, const int32_t* rowToken, const float* rowWeight,
                       const float* yp, const int32_t* rowAssignment, int n, float* dyp,
                       float* dWeight, cudaStream_t stream) {
  if (n == 0) return;
  checkLaunch(moekit::launch<unpermuteBackwardKernel>(blocksFor(int64_t(n) * 32), kThreads, 0, stream, dy,
                                              H, rowToken, rowWeight, yp, rowAssignment, n, dyp,
                                              dWeight),
              "unpermuteBackwardKernel");
}

}  // namespace moekit::cuda
