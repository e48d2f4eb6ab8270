// Warp intrinsics of the SIMT emulator: the CUDA Programming Guide's warp-shuffle examples, every
// shfl mode at every width against a direct transcription of PTX's shfl.sync pseudocode, and the
// vote/match/reduce intrinsics with partial masks.
#include <cstdint>
#include <vector>

#include "harness.h"

namespace {

// ---- Programming Guide examples ----------------------------------------------------------------
__global__ void broadcast(int arg, int* out) {
  const int laneId = threadIdx.x & 0x1f;
  int value = -1;
  if (laneId == 0) value = arg;
  value = __shfl_sync(0xffffffff, value, 0);
  out[threadIdx.x] = value;
}

__global__ void scan4(int* out) {
  const int laneId = threadIdx.x & 0x1f;
  int value = 31 - laneId;
  for (int i = 1; i <= 4; i *= 2) {
    const int n = __shfl_up_sync(0xffffffff, value, i, 8);
    if ((laneId & 7) >= i) value += n;
  }
  out[threadIdx.x] = value;
}

__global__ void xorReduce(const int* in, int width, int* out) {
  int value = in[threadIdx.x];
  for (int i = width / 2; i >= 1; i /= 2) value += __shfl_xor_sync(0xffffffff, value, i, width);
  out[threadIdx.x] = value;
}

EMU_CASE("warp: broadcasts lane 0's value with __shfl_sync (Programming Guide)") {
  emutest::DeviceArray<int> out(64);
  EMU_CUDA(moekit::launch<broadcast>(1, 64, 0, nullptr, 1234, out.get()));
  for (int v : out.download()) EMU_EXPECT(v == 1234, "every lane receives lane 0's value");
}

EMU_CASE("warp: inclusive scan over 8-lane segments with __shfl_up_sync (Programming Guide)") {
  emutest::DeviceArray<int> out(32);
  EMU_CUDA(moekit::launch<scan4>(1, 32, 0, nullptr, out.get()));
  const std::vector<int> got = out.download();
  for (int lane = 0; lane < 32; ++lane) {
    int expected = 0;
    for (int k = lane & ~7; k <= lane; ++k) expected += 31 - k;
    EMU_EXPECT(got[size_t(lane)] == expected, "lane " + std::to_string(lane) + " holds its segment's prefix sum");
  }
}

EMU_CASE("warp: butterfly reduction with __shfl_xor_sync sums each segment at every width") {
  std::vector<int> in(32);
  for (int i = 0; i < 32; ++i) in[size_t(i)] = i * i + 3;
  emutest::DeviceArray<int> dIn(in);
  emutest::DeviceArray<int> out(32);
  for (int width = 1; width <= 32; width *= 2) {
    EMU_CUDA(moekit::launch<xorReduce>(1, 32, 0, nullptr, dIn.get(), width, out.get()));
    const std::vector<int> got = out.download();
    for (int lane = 0; lane < 32; ++lane) {
      int expected = 0;
      for (int k = lane & ~(width - 1); k < (lane & ~(width - 1)) + width; ++k) expected += in[size_t(k)];
      EMU_EXPECT(got[size_t(lane)] == expected,
                 "width " + std::to_string(width) + " lane " + std::to_string(lane) + " holds its segment sum");
    }
  }
}

// ---- every mode, width and offset against the PTX rule -----------------------------------------
enum Mode { Idx, Up, Down, Xor };
constexpr int kWidths[] = {1, 2, 4, 8, 16, 32};
constexpr int kOffsets = 40;  // 0..39: past 31 only b[4:0] counts

// PTX ISA, shfl.sync: the value lane `lane` receives, transcribed independently of the emulator.
int ptxShfl(Mode mode, int lane, int b, int width, const int* values) {
  const int c = mode == Up ? ((32 - width) << 8) : (((32 - width) << 8) | 0x1f);
  const int bval = b & 0x1f;
  const int cval = c & 0x1f;
  const int segmask = (c >> 8) & 0x1f;
  const int maxLane = (lane & segmask) | (cval & ~segmask);
  const int minLane = lane & segmask;
  int j = 0;
  bool pval = false;
  switch (mode) {
    case Up: j = lane - bval; pval = j >= maxLane; break;
    case Down: j = lane + bval; pval = j <= maxLane; break;
    case Xor: j = lane ^ bval; pval = j <= maxLane; break;
    case Idx: j = minLane | (bval & ~segmask); pval = j <= maxLane; break;
  }
  return values[pval ? j : lane];
}

// Block b runs configuration (mode, width, offset) = decode(b) on 64 threads (two warps).
__global__ void shflEveryMode(int* out) {
  const int config = int(blockIdx.x);
  const Mode mode = Mode(config % 4);
  const int width = kWidths[config / 4 % 6];
  const int b = config / 24;
  const int lane = int(threadIdx.x) & 31;
  const int value = 1000 * int(threadIdx.x / 32) + 7 * lane + 100;
  int got = 0;
  switch (mode) {
    case Idx: got = __shfl_sync(0xffffffff, value, b, width); break;
    case Up: got = __shfl_up_sync(0xffffffff, value, unsigned(b), width); break;
    case Down: got = __shfl_down_sync(0xffffffff, value, unsigned(b), width); break;
    case Xor: got = __shfl_xor_sync(0xffffffff, value, b, width); break;
  }
  out[blockIdx.x * 64 + threadIdx.x] = got;
}

EMU_CASE("warp: every shfl mode at every width and offset follows PTX shfl.sync") {
  const int configs = 4 * 6 * kOffsets;
  emutest::DeviceArray<int> out(size_t(configs) * 64);
  EMU_CUDA(moekit::launch<shflEveryMode>(configs, 64, 0, nullptr, out.get()));
  const std::vector<int> got = out.download();
  for (int config = 0; config < configs; ++config) {
    const Mode mode = Mode(config % 4);
    const int width = kWidths[config / 4 % 6];
    const int b = config / 24;
    for (int t = 0; t < 64; ++t) {
      int values[32];
      for (int l = 0; l < 32; ++l) values[l] = 1000 * (t / 32) + 7 * l + 100;
      const int expected = ptxShfl(mode, t & 31, b, width, values);
      EMU_EXPECT(got[size_t(config) * 64 + size_t(t)] == expected,
                 "mode " + std::to_string(int(mode)) + " width " + std::to_string(width) + " offset " +
                     std::to_string(b) + " thread " + std::to_string(t));
    }
  }
}

// Shuffles of float and double move the bits unchanged.
__global__ void shflTypes(float* f, double* d) {
  const float fv = float(threadIdx.x) + 0.25f;
  const double dv = double(threadIdx.x) * 1e300;
  f[threadIdx.x] = __shfl_down_sync(0xffffffff, fv, 1);
  d[threadIdx.x] = __shfl_xor_sync(0xffffffff, dv, 3);
}

EMU_CASE("warp: shuffles carry float and double bits unchanged") {
  emutest::DeviceArray<float> f(32);
  emutest::DeviceArray<double> d(32);
  EMU_CUDA(moekit::launch<shflTypes>(1, 32, 0, nullptr, f.get(), d.get()));
  const auto fs = f.download();
  const auto ds = d.download();
  for (int l = 0; l < 32; ++l) {
    EMU_EXPECT(fs[size_t(l)] == float(l < 31 ? l + 1 : l) + 0.25f, "float shfl_down lane " + std::to_string(l));
    EMU_EXPECT(ds[size_t(l)] == double(l ^ 3) * 1e300, "double shfl_xor lane " + std::to_string(l));
  }
}

// ---- votes with partial masks -----------------------------------------------------------------
// Lanes 0-15 vote in one group and lanes 16-31 in another, at the same call; even lanes of warp 1
// do not vote at all (they exit), and its odd lanes vote under mask 0xAAAAAAAA.
__global__ void votes(unsigned* ballot, int* any, int* all) {
  const int lane = int(threadIdx.x) & 31;
  const int pred = lane % 3 == 0;
  unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  if (threadIdx.x >= 32) {
    if (lane % 2 == 0) return;
    mask = 0xaaaaaaaau;
  }
  ballot[threadIdx.x] = __ballot_sync(mask, pred);
  any[threadIdx.x] = __any_sync(mask, lane == 7 || lane == 29);
  all[threadIdx.x] = __all_sync(mask, lane != 3);
}

EMU_CASE("warp: ballot, any and all see only the lanes of a partial mask") {
  emutest::DeviceArray<unsigned> ballot(64);
  emutest::DeviceArray<int> any(64), all(64);
  EMU_CUDA(moekit::launch<votes>(1, 64, 0, nullptr, ballot.get(), any.get(), all.get()));
  const auto b = ballot.download();
  const auto an = any.download();
  const auto al = all.download();
  for (int t = 0; t < 64; ++t) {
    const int lane = t & 31;
    if (t >= 32 && lane % 2 == 0) continue;
    const unsigned mask = t >= 32 ? 0xaaaaaaaau : (lane < 16 ? 0x0000ffffu : 0xffff0000u);
    unsigned expected = 0;
    bool anyExpected = false, allExpected = true;
    for (int j = 0; j < 32; ++j) {
      if (!(mask >> j & 1u)) continue;
      if (j % 3 == 0) expected |= 1u << j;
      anyExpected = anyExpected || j == 7 || j == 29;
      allExpected = allExpected && j != 3;
    }
    EMU_EXPECT(b[size_t(t)] == expected, "ballot of thread " + std::to_string(t));
    EMU_EXPECT((an[size_t(t)] != 0) == anyExpected, "any of thread " + std::to_string(t));
    EMU_EXPECT((al[size_t(t)] != 0) == allExpected, "all of thread " + std::to_string(t));
  }
}

// Lanes 0, 4, 8, ... call __match_all_sync with mask 0x11111111; the others exit at once.
__global__ void matchAll(int split, unsigned* out, int* pred) {
  const int lane = int(threadIdx.x);
  if (lane % 4 != 0) return;
  out[lane / 4] = __match_all_sync(0x11111111, lane < split ? 5 : 6, &pred[lane / 4]);
}

EMU_CASE("warp: __match_all_sync returns the mask only when every lane of it holds the same value") {
  emutest::DeviceArray<unsigned> out(8);
  emutest::DeviceArray<int> pred(8);
  EMU_CUDA(moekit::launch<matchAll>(1, 32, 0, nullptr, 32, out.get(), pred.get()));
  for (unsigned v : out.download()) EMU_EXPECT(v == 0x11111111u, "equal values: the mask");
  for (int p : pred.download()) EMU_EXPECT(p == 1, "equal values: predicate 1");
  EMU_CUDA(moekit::launch<matchAll>(1, 32, 0, nullptr, 16, out.get(), pred.get()));
  for (unsigned v : out.download()) EMU_EXPECT(v == 0, "differing values: 0");
  for (int p : pred.download()) EMU_EXPECT(p == 0, "differing values: predicate 0");
}

__global__ void reduceAndMatch(unsigned* matchAny, unsigned* sum, int* minimum, unsigned* orBits) {
  const int lane = int(threadIdx.x);
  matchAny[lane] = __match_any_sync(0xffffffff, lane % 4);
  sum[lane] = __reduce_add_sync(0xffffffff, unsigned(lane));
  minimum[lane] = __reduce_min_sync(0xffffffff, 10 - lane);
  orBits[lane] = __reduce_or_sync(0x0000ffff << (lane & 16), 1u << (lane & 15));
}

EMU_CASE("warp: __match_any_sync groups equal values and __reduce_*_sync combines the mask") {
  emutest::DeviceArray<unsigned> any(32), sum(32), orBits(32);
  emutest::DeviceArray<int> minimum(32);
  EMU_CUDA(moekit::launch<reduceAndMatch>(1, 32, 0, nullptr, any.get(), sum.get(), minimum.get(), orBits.get()));
  const auto a = any.download();
  const auto s = sum.download();
  const auto m = minimum.download();
  const auto o = orBits.download();
  for (int lane = 0; lane < 32; ++lane) {
    EMU_EXPECT(a[size_t(lane)] == 0x11111111u << (lane % 4), "match_any groups lanes with equal keys");
    EMU_EXPECT(s[size_t(lane)] == 496, "reduce_add sums 0..31");
    EMU_EXPECT(m[size_t(lane)] == -21, "reduce_min (signed) finds 10-31");
    EMU_EXPECT(o[size_t(lane)] == 0xffffu, "reduce_or over each half-warp mask");
  }
}

}  // namespace
