// The kernels of the bf16 backward GEMMs (grouped_gemm_bf16_backward.h: layout, math,
// requirements): one kernel template, two operand layouts (NN for dA, TN for dW). Included by
// grouped_gemm_bf16_backward.cu, which instantiates the two, and by its test, which also
// instantiates a layout with a deliberately wrong fragment load to show that its comparison fails.
//
// Math, per output tile C [64,64] at (row0, col0) (fp32 accumulators, then C or old + C stored):
//   NN  C[i, j] = Σ_{n < n_g} dOut[row0 + i, n] · w_g[n, col0 + j]             (row0: a padded row)
//   TN  C[i, j] = Σ_{r < rows_g} dOut[start_g + r, row0 + i] · a[start_g + r, col0 + j]   (row0 < n_g)
// Both are mma.sync m16n8k16 products A[64, K]·B[K, 64] over a reduction K walked in steps of
// BK = 32 (NN: K = n_g; TN: K = rows_g, in ascending order). What differs is how A and B sit in
// shared memory, so which ldmatrix form turns them into fragments (tensor_core.h):
//   NN  A = dOut slice [64 rows][32 n], k-contiguous like mma's row-major A   → ldmatrixX4
//       B = w_g slice [32 n][64 k], row-major [K][N]                         → ldmatrixX4Trans
//   TN  A = dOutᵀ: stored as the dOut slice [32 rows][64 n], i.e. [K][M]       → ldmatrixX4Trans
//       B = a slice [32 rows][64 k], row-major [K][N]                        → ldmatrixX4Trans
// Staged rows are padded by 8 bf16 (BK-wide rows to 40 elements = 80 bytes, 64-wide rows to 72 =
// 144 bytes): every row stays 16-byte aligned for cp.async and ldmatrix, and the 8 rows one
// ldmatrix matrix reads fall in 8 distinct groups of 4 banks.
//
// Thread mapping (as the forward, grouped_gemm_bf16.cu): one block of 128 threads (4 warps) per
// 64×64 output tile; the host lists the tiles (NN: each 64-row tile of a group's rows crossed with
// ⌈k_g/64⌉ column tiles; TN: ⌈n_g/64⌉ × ⌈k_g/64⌉ tiles per group, the whole row reduction in one
// block, so no atomics and a fixed summation order) and the grid is that list. Warp w owns the
// 32×32 quadrant (w/2, w%2): 2×4 mma tiles of 16×8, 32 fp32 accumulators per lane. Each stage
// holds 256 16-byte chunks per operand, 2 per thread, copied by cp.async; chunks outside the
// group (rows past rows_g, padding rows included; n past n_g; k past k_g) are zero-filled without
// a read, so they contribute 0. Per BK, each warp does 2 k-steps of 16: 2 ldmatrix.x4 for its A
// fragments, 2 for its B fragments (two n8 tiles each), 8 mma. Pipeline (3 stages) per step kt:
// wait until stage kt landed (cp.async.wait_group 1), __syncthreads (everyone's copies landed and
// everyone is done with stage kt−1, refilled next), issue stage kt+2, commit (an empty group past
// the end keeps the count uniform), compute stage kt.
// Smem per block: 3 stages × (64×40 + 32×72) × 2 bytes = 28.5 KiB (NN), 3 × 2 × 32×72 × 2 = 27 KiB
// (TN), under the 48 KiB default.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"
#include "grouped_gemm_bf16.h"
#include "padded_groups.h"
#include "stream_buffer.h"
#include "tensor_core.h"

namespace moekit::cuda::bf16backward {

constexpr int kTile = kBf16GemmRowAlign;  // 64: output tile rows and columns
constexpr int kTileK = 32;                // reduction step BK
constexpr int kStages = 3;
constexpr int kThreads = 128;
constexpr int kNarrowRow = kTileK + 8;    // staged row of BK elements
constexpr int kWideRow = kTile + 8;       // staged row of 64 elements
constexpr int kCopiesPerThread = 2;       // 16-byte chunks per operand and stage
constexpr int kWarpTile = 32;
constexpr int kMmaRows = kWarpTile / 16;  // m16 tiles per warp
constexpr int kMmaCols = kWarpTile / 8;   // n8 tiles per warp
static_assert(kTile * (kTileK / 8) == kCopiesPerThread * kThreads, "NN's dOut slice: 2 chunks per thread");
static_assert(kTileK * (kTile / 8) == kCopiesPerThread * kThreads, "the [32][64] slices: 2 chunks per thread");

// A group as the kernels see it: start = its first padded row.
struct Group {
  int64_t start;
  int rows, n, k;
  const uint16_t* w;  // NN
  float* dW;          // TN
};

// One output tile of group `group`: NN rows [row0, row0 + 64) of the padded layout, TN rows
// [row0, row0 + 64) of dW_g; columns [col0, col0 + 64) of k_g.
struct Tile {
  int64_t row0;
  int group;
  int col0;
};

struct Operands {
  const uint16_t* dOut = nullptr;
  int ldDOut = 0;
  const uint16_t* a = nullptr;  // TN
  int lda = 0;
  float* dA = nullptr;          // NN
  int ldDA = 0;
  bool accumulate = false;
};

// dA (+)= dOut_g · w_g.
struct NNLayout {
  static constexpr int kSliceA = kTile * kNarrowRow;  // dOut [64 rows][32 n]
  static constexpr int kSliceB = kTileK * kWideRow;   // w_g [32 n][64 k]

  __device__ __forceinline__ static int steps(const Group& g) { return (g.n + kTileK - 1) / kTileK; }

  __device__ __forceinline__ static int tileRows(const Group& g, const Tile& t) {
    const int64_t left = g.start + g.rows - t.row0;
    return left < kTile ? int(left) : kTile;
  }

  __device__ __forceinline__ static void loadStage(uint16_t* stage, const Operands& op, const Group& g, const Tile& t,
                                                   int step) {
    const int n0 = step * kTileK, rows = tileRows(g, t);
    MOEKIT_UNROLL
    for (int q = 0; q < kCopiesPerThread; ++q) {
      const int c = int(threadIdx.x) + q * kThreads;
      const int row = c / (kTileK / 8), nn = c % (kTileK / 8) * 8;
      const bool aIn = row < rows && n0 + nn < g.n;
      cpAsync16OrZero(stage + row * kNarrowRow + nn, aIn ? op.dOut + (t.row0 + row) * op.ldDOut + n0 + nn : op.dOut,
                      aIn);
      const int r = c / (kTile / 8), kk = c % (kTile / 8) * 8;
      const bool bIn = n0 + r < g.n && t.col0 + kk < g.k;
      cpAsync16OrZero(stage + kSliceA + r * kWideRow + kk,
                      bIn ? g.w + int64_t(n0 + r) * g.k + t.col0 + kk : op.dOut, bIn);
    }
  }

  // A rows warpRow + 16i.., reduction kk..kk+15: four 8×8 matrices (rows +0/+8) × (k +0/+8).
  __device__ __forceinline__ static void fragmentA(uint32_t (&a)[4], const uint16_t* stage, int warpRow, int i, int kk) {
    const int lane = int(threadIdx.x) % 32;
    ldmatrixX4(a, stage + (warpRow + 16 * i + lane % 16) * kNarrowRow + kk + 8 * (lane / 16));
  }

  // B columns warpCol + 16j.. (two n8 tiles), reduction kk..kk+15, from [K][N] rows.
  __device__ __forceinline__ static void fragmentB(uint32_t (&b)[4], const uint16_t* stage, int warpCol, int j, int kk) {
    const int lane = int(threadIdx.x) % 32;
    ldmatrixX4Trans(b, stage + kSliceA + (kk + lane % 8 + 8 * (lane / 8 % 2)) * kWideRow + warpCol + 16 * j +
                           8 * (lane / 16));
  }

  // Element (row, col) of the tile in dA, or null outside the group's real rows and k_g.
  __device__ __forceinline__ static float* output(const Operands& op, const Group& g, const Tile& t, int row, int col) {
    if (row >= tileRows(g, t) || t.col0 + col >= g.k) return nullptr;
    return op.dA + (t.row0 + row) * op.ldDA + t.col0 + col;
  }
};

// dW_g (+)= dOut_gᵀ · a_g over the group's real rows.
struct TNLayout {
  static constexpr int kSliceA = kTileK * kWideRow;  // dOut [32 rows][64 n]
  static constexpr int kSliceB = kTileK * kWideRow;  // a [32 rows][64 k]

  __device__ __forceinline__ static int steps(const Group& g) { return (g.rows + kTileK - 1) / kTileK; }

  __device__ __forceinline__ static void loadStage(uint16_t* stage, const Operands& op, const Group& g, const Tile& t,
                                                   int step) {
    MOEKIT_UNROLL
    for (int q = 0; q < kCopiesPerThread; ++q) {
      const int c = int(threadIdx.x) + q * kThreads;
      const int r = c / (kTile / 8), cc = c % (kTile / 8) * 8;
      const bool rowIn = step * kTileK + r < g.rows;
      const int64_t row = g.start + step * kTileK + r;
      const bool aIn = rowIn && t.row0 + cc < g.n;
      cpAsync16OrZero(stage + r * kWideRow + cc, aIn ? op.dOut + row * op.ldDOut + t.row0 + cc : op.dOut, aIn);
      const bool bIn = rowIn && t.col0 + cc < g.k;
      cpAsync16OrZero(stage + kSliceA + r * kWideRow + cc, bIn ? op.a + row * op.lda + t.col0 + cc : op.dOut, bIn);
    }
  }

  // A = dOutᵀ rows (n) warpRow + 16i.., reduction kk..: matrix i of the x4 is (k +8·(i/2), n +8·(i%2)),
  // stored [K][M], so transposed on load.
  __device__ __forceinline__ static void fragmentA(uint32_t (&a)[4], const uint16_t* stage, int warpRow, int i, int kk) {
    const int lane = int(threadIdx.x) % 32;
    ldmatrixX4Trans(a, stage + (kk + 8 * (lane / 16) + lane % 8) * kWideRow + warpRow + 16 * i + 8 * (lane / 8 % 2));
  }

  __device__ __forceinline__ static void fragmentB(uint32_t (&b)[4], const uint16_t* stage, int warpCol, int j, int kk) {
    const int lane = int(threadIdx.x) % 32;
    ldmatrixX4Trans(b, stage + kSliceA + (kk + lane % 8 + 8 * (lane / 8 % 2)) * kWideRow + warpCol + 16 * j +
                           8 * (lane / 16));
  }

  // Element (row, col) of the tile in dW_g, or null past n_g or k_g.
  __device__ __forceinline__ static float* output(const Operands&, const Group& g, const Tile& t, int row, int col) {
    const int64_t n = t.row0 + row;
    if (n >= g.n || t.col0 + col >= g.k) return nullptr;
    return g.dW + n * g.k + t.col0 + col;
  }
};

template <class Layout>
__global__ void __launch_bounds__(kThreads)
    groupedGemmBf16BackwardKernel(Operands op, const Group* groups, const Tile* tiles) {
  constexpr int kStageHalves = Layout::kSliceA + Layout::kSliceB;
  uint16_t* smem = moekit::dynamicShared<uint16_t>();
  const Tile tile = tiles[blockIdx.x];
  const Group group = groups[tile.group];
  const int steps = Layout::steps(group);

  MOEKIT_UNROLL
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) Layout::loadStage(smem + s * kStageHalves, op, group, tile, s);
    cpAsyncCommit();
  }
  const int warp = int(threadIdx.x) / 32;
  const int warpRow = kWarpTile * (warp / 2), warpCol = kWarpTile * (warp % 2);
  float acc[kMmaRows][kMmaCols][4] = {};
  for (int kt = 0; kt < steps; ++kt) {
    cpAsyncWait<kStages - 2>();
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < steps) Layout::loadStage(smem + next % kStages * kStageHalves, op, group, tile, next);
    cpAsyncCommit();
    const uint16_t* stage = smem + kt % kStages * kStageHalves;
    MOEKIT_UNROLL
    for (int kk = 0; kk < kTileK; kk += 16) {
      uint32_t a[kMmaRows][4], b[kMmaCols / 2][4];  // b: x4 = (b0, b1) of two n8 tiles
      MOEKIT_UNROLL
      for (int i = 0; i < kMmaRows; ++i) Layout::fragmentA(a[i], stage, warpRow, i, kk);
      MOEKIT_UNROLL
      for (int j = 0; j < kMmaCols / 2; ++j) Layout::fragmentB(b[j], stage, warpCol, j, kk);
      MOEKIT_UNROLL
      for (int i = 0; i < kMmaRows; ++i) {
        MOEKIT_UNROLL
        for (int j = 0; j < kMmaCols; ++j) {
          const uint32_t bj[2] = {b[j / 2][2 * (j % 2)], b[j / 2][2 * (j % 2) + 1]};
          mmaBf16m16n8k16(acc[i][j], a[i], bj);
        }
      }
    }
  }

  const int lane = int(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
  MOEKIT_UNROLL
  for (int i = 0; i < kMmaRows; ++i) {
    MOEKIT_UNROLL
    for (int half = 0; half < 2; ++half) {
      MOEKIT_UNROLL
      for (int j = 0; j < kMmaCols; ++j) {
        MOEKIT_UNROLL
        for (int e = 0; e < 2; ++e) {
          float* out = Layout::output(op, group, tile, warpRow + 16 * i + g + 8 * half, warpCol + 8 * j + 2 * t + e);
          if (!out) continue;
          const float c = acc[i][j][2 * half + e];
          *out = op.accumulate ? *out + c : c;
        }
      }
    }
  }
}

// ---- host side --------------------------------------------------------------------------------------

// The kernels' group table (start_g from bf16GemmRowStarts); dW: one pointer per group, or empty (NN).
inline std::vector<Group> kernelGroups(const std::vector<Bf16GemmGroup>& groups, const std::vector<float*>& dW) {
  const std::vector<int64_t> start = paddedRowStarts<kTile>(groups);
  std::vector<Group> out;
  for (size_t g = 0; g < groups.size(); ++g)
    out.push_back(Group{start[g], groups[g].rows, groups[g].n, groups[g].k, groups[g].w, dW.empty() ? nullptr : dW[g]});
  return out;
}

inline void checkTileCount(const std::vector<Tile>& tiles, const char* api) {
  if (tiles.size() > size_t(INT_MAX))
    throw Error(ErrorKind::Shape, std::string(api) + ": groups: more than 2^31 − 1 output tiles");
}

// NN: every 64-row tile of a group's real rows × its ⌈k_g/64⌉ column tiles.
inline std::vector<Tile> nnTiles(const std::vector<Group>& groups, const char* api) {
  std::vector<Tile> tiles;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int r = 0; r < groups[g].rows; r += kTile)
      for (int c = 0; c < groups[g].k; c += kTile) tiles.push_back(Tile{groups[g].start + r, int(g), c});
    checkTileCount(tiles, api);
  }
  return tiles;
}

// TN: ⌈n_g/64⌉ × ⌈k_g/64⌉ tiles of each group that has rows, or of every group when dW is overwritten.
inline std::vector<Tile> tnTiles(const std::vector<Group>& groups, bool accumulate, const char* api) {
  std::vector<Tile> tiles;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].rows <= 0 && accumulate) continue;
    for (int r = 0; r < groups[g].n; r += kTile)
      for (int c = 0; c < groups[g].k; c += kTile) tiles.push_back(Tile{r, int(g), c});
    checkTileCount(tiles, api);
  }
  return tiles;
}

template <class Layout>
void launchBackward(const char* api, const Operands& op, const std::vector<Group>& groups, const std::vector<Tile>& tiles,
                    cudaStream_t stream) {
  if (tiles.empty()) return;
  // From pageable memory, cudaMemcpyAsync has copied its source out before it returns, so the
  // host vectors may end with this call.
  StreamBuffer<Group> dGroups(groups.size(), stream, "the bf16 backward GEMM groups");
  StreamBuffer<Tile> dTiles(tiles.size(), stream, "the bf16 backward GEMM tiles");
  checkCuda(copyAsync(dGroups.get(), groups.data(), groups.size() * sizeof(Group), cudaMemcpyHostToDevice, stream),
            std::string(api) + ": cudaMemcpyAsync of the groups");
  checkCuda(copyAsync(dTiles.get(), tiles.data(), tiles.size() * sizeof(Tile), cudaMemcpyHostToDevice, stream),
            std::string(api) + ": cudaMemcpyAsync of the tiles");
  const size_t smem = size_t(kStages) * (Layout::kSliceA + Layout::kSliceB) * sizeof(uint16_t);
  checkCuda(moekit::launch<groupedGemmBf16BackwardKernel<Layout>>(dim3(unsigned(tiles.size())), dim3(kThreads), smem,
                                                                  stream, op, dGroups.get(), dTiles.get()),
            std::string(api) + ": launch of groupedGemmBf16BackwardKernel");
}

}  // namespace moekit::cuda::bf16backward
