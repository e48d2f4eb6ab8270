// Grouped bf16 GEMM on tensor cores (grouped_gemm_bf16.h: layout, epilogues, requirements).
// The tensor-core instructions come from tensor_core.h (inline PTX under nvcc, emulated lane data
// movement on the SIMT emulator). CPU reference: test/cuda/grouped_gemm_bf16_test.cc (bf16 decode,
// float64 sums).
//
// Math, per output tile: C [64,64] = A [64, k_g] · W [64, k_g]ᵀ with A the tile's rows of a and W
// rows col0..col0+63 of w_g (and C3 with w3_g for swiglu), fp32 accumulators; then the epilogue
// (store C; store a1 = C, a3 = C3, h = swiglu(C, C3); or y[token] += weight · C).
//
// Thread mapping: one block of 128 threads (4 warps) per 64×64 output tile. The host lists the
// tiles of every group (each row tile of a group crossed with its ⌈n_g/64⌉ column tiles: the
// padding keeps a row tile inside one group) and the grid is that list. Warp w owns the 32×32
// quadrant (w/2, w%2): 2×4 mma tiles of 16×8, 32 fp32 accumulators per lane (64 for swiglu).
// The inner dimension is walked in steps of BK = 32 through a 3-stage cp.async pipeline: stage s
// holds A and W (and W3) slices [64][32] bf16, rows padded to 40 elements (80 bytes: every row
// 16-byte aligned for cp.async and ldmatrix, and the 8 rows one ldmatrix reads fall in 8 distinct
// 16-byte bank groups, so no conflicts). Each thread copies 2 chunks of 16 bytes per operand and
// stage; chunks past the group's rows, n_g or k_g are zero-filled without a read (so padding rows,
// tails of n and k, contribute 0). Per BK, each warp does 2 k-steps of 16: 2 ldmatrix.x4 for its A
// fragments (16×16 each), 2 for its W fragments (two n8 tiles each, W [n][k] read untransposed
// gives mma's column-major B), then 8 mma.sync m16n8k16. Pipeline per step kt: wait until stage
// kt landed (cp.async.wait_group 1), __syncthreads (everyone's copies landed, and everyone is done
// with stage kt−1, which is refilled next), issue stage kt+2, commit (an empty group past the end,
// so the group count stays uniform), compute stage kt.
// Smem: 3 stages × (2 or 3) × 64 × 40 × 2 bytes = 30 KiB (45 KiB for swiglu), under the 48 KiB
// default.
#include "grouped_gemm_bf16.h"

#include <climits>
#include <string>

#include "../core/activation.h"
#include "../core/errors.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"
#include "stream_buffer.h"
#include "padded_groups.h"
#include "tensor_core.h"

namespace moekit::cuda {

namespace {

constexpr int kTileM = kBf16GemmRowAlign;  // 64
constexpr int kTileN = 64;
constexpr int kTileK = 32;
constexpr int kStages = 3;
constexpr int kThreads = 128;
constexpr int kRowHalves = kTileK + 8;                  // staged row: 32 bf16 + 8 of padding
constexpr int kSliceHalves = kTileM * kRowHalves;       // one operand of one stage (kTileN = kTileM)
constexpr int kChunksPerRow = kTileK / 8;               // 16-byte chunks
constexpr int kCopiesPerThread = kTileM * kChunksPerRow / kThreads;  // 2
constexpr int kWarpTile = 32;
constexpr int kMmaRows = kWarpTile / 16;  // m16 tiles per warp
constexpr int kMmaCols = kWarpTile / 8;   // n8 tiles per warp
static_assert(kTileN == kTileM, "one slice size serves both operands");
static_assert(kTileM * kChunksPerRow % kThreads == 0, "every thread copies the same number of chunks");

enum class Epilogue { Store, Swiglu };

using Tile = PaddedTile;

struct Outputs {
  float* out = nullptr;  // Store: out; Swiglu: h
  float* a1 = nullptr;
  float* a3 = nullptr;
  int ld = 0;
};

template <int kOperands>
__device__ __forceinline__ void loadStage(uint16_t* stage, const uint16_t* aTile, int64_t lda, int rows,
                                          const uint16_t* const (&w)[kOperands - 1], int k, int cols,
                                          int k0, const uint16_t* anyValid) {
  MOEKIT_UNROLL
  for (int q = 0; q < kCopiesPerThread; ++q) {
    const int c = int(threadIdx.x) + q * kThreads;
    const int row = c / kChunksPerRow, kk = (c % kChunksPerRow) * 8;
    const bool kIn = k0 + kk < k;
    uint16_t* dst = stage + row * kRowHalves + kk;
    const bool aIn = kIn && row < rows;
    cpAsync16OrZero(dst, aIn ? aTile + row * lda + k0 + kk : anyValid, aIn);
    const bool wIn = kIn && row < cols;
    MOEKIT_UNROLL
    for (int o = 0; o < kOperands - 1; ++o) {
      cpAsync16OrZero(dst + (o + 1) * kSliceHalves, wIn ? w[o] + int64_t(row) * k + k0 + kk : anyValid, wIn);
    }
  }
}

template <int kOperands>
__device__ __forceinline__ void multiplyStage(const uint16_t* stage, int warpRow, int warpCol,
                                              float (&acc)[kOperands - 1][kMmaRows][kMmaCols][4]) {
  const int lane = int(threadIdx.x) % 32;
  MOEKIT_UNROLL
  for (int kk = 0; kk < kTileK; kk += 16) {
    uint32_t a[kMmaRows][4];
    MOEKIT_UNROLL
    for (int i = 0; i < kMmaRows; ++i)
      ldmatrixX4(a[i], stage + (warpRow + 16 * i + lane % 16) * kRowHalves + kk + 8 * (lane / 16));
    MOEKIT_UNROLL
    for (int o = 0; o < kOperands - 1; ++o) {
      const uint16_t* w = stage + (o + 1) * kSliceHalves;
      uint32_t b[kMmaCols / 2][4];  // x4 = (b0, b1) of two n8 tiles
      MOEKIT_UNROLL
      for (int j = 0; j < kMmaCols / 2; ++j)
        ldmatrixX4(b[j], w + (warpCol + 16 * j + lane % 8 + 8 * (lane / 16)) * kRowHalves + kk + 8 * (lane / 8 % 2));
      MOEKIT_UNROLL
      for (int i = 0; i < kMmaRows; ++i) {
        MOEKIT_UNROLL
        for (int j = 0; j < kMmaCols; ++j) {
          const uint32_t bj[2] = {b[j / 2][2 * (j % 2)], b[j / 2][2 * (j % 2) + 1]};
          mmaBf16m16n8k16(acc[o][i][j], a[i], bj);
        }
      }
    }
  }
}

template <Epilogue kEpilogue>
__global__ void __launch_bounds__(kThreads)
    groupedGemmBf16Kernel(const uint16_t* a, int lda, const Bf16GemmGroup* groups, const Tile* tiles, Outputs o) {
  constexpr int kOperands = kEpilogue == Epilogue::Swiglu ? 3 : 2;
  uint16_t* smem = moekit::dynamicShared<uint16_t>();
  const Tile tile = tiles[blockIdx.x];
  const Bf16GemmGroup group = groups[tile.group];
  const uint16_t* aTile = a + tile.row0 * lda;
  const uint16_t* w[kOperands - 1];  // W (and W3) at the tile's first column
  w[0] = group.w + int64_t(tile.col0) * group.k;
  if constexpr (kOperands == 3) w[1] = group.w3 + int64_t(tile.col0) * group.k;
  const int cols = group.n - tile.col0 < kTileN ? group.n - tile.col0 : kTileN;
  const int kSteps = (group.k + kTileK - 1) / kTileK;
  const auto stage = [smem](int s) { return smem + s * kOperands * kSliceHalves; };

  MOEKIT_UNROLL
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < kSteps) loadStage<kOperands>(stage(s), aTile, lda, tile.rows, w, group.k, cols, s * kTileK, a);
    cpAsyncCommit();
  }
  const int warp = int(threadIdx.x) / 32;
  const int warpRow = kWarpTile * (warp / 2), warpCol = kWarpTile * (warp % 2);
  float acc[kOperands - 1][kMmaRows][kMmaCols][4] = {};
  for (int kt = 0; kt < kSteps; ++kt) {
    cpAsyncWait<kStages - 2>();
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < kSteps) loadStage<kOperands>(stage(next % kStages), aTile, lda, tile.rows, w, group.k, cols, next * kTileK, a);
    cpAsyncCommit();
    multiplyStage<kOperands>(stage(kt % kStages), warpRow, warpCol, acc);
  }

  const int lane = int(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
  MOEKIT_UNROLL
  for (int i = 0; i < kMmaRows; ++i) {
    MOEKIT_UNROLL
    for (int half = 0; half < 2; ++half) {
      const int row = warpRow + 16 * i + g + 8 * half;
      if (row >= tile.rows) continue;
      const int64_t r = tile.row0 + row;
      MOEKIT_UNROLL
      for (int j = 0; j < kMmaCols; ++j) {
        MOEKIT_UNROLL
        for (int e = 0; e < 2; ++e) {
          const int col = warpCol + 8 * j + 2 * t + e;
          if (col >= cols) continue;
          const float c = acc[0][i][j][2 * half + e];
          const int64_t at = r * o.ld + tile.col0 + col;
          if constexpr (kEpilogue == Epilogue::Store) {
            o.out[at] = c;
          } else {
            const float c3 = acc[kOperands - 2][i][j][2 * half + e];
            if (o.a1) o.a1[at] = c;
            if (o.a3) o.a3[at] = c3;
            o.out[at] = activation::swiglu(c, c3);
          }
        }
      }
    }
  }
}

[[noreturn]] void fail(ErrorKind kind, const char* api, const std::string& message) {
  throw Error(kind, std::string(api) + ": " + message);
}


// The checks shared by every epilogue; returns Mpad. ld / ldName: out's row stride.
int64_t checkGroups(const char* api, const uint16_t* a, int lda, const std::vector<Bf16GemmGroup>& groups,
                    bool needW3, int ld, const char* ldName) {
  if (lda <= 0 || lda % 8 != 0) fail(ErrorKind::Shape, api, "lda: expected a positive multiple of 8, got " + std::to_string(lda));
  if (ld <= 0) fail(ErrorKind::Shape, api, std::string(ldName) + ": expected ≥ 1, got " + std::to_string(ld));
  for (size_t g = 0; g < groups.size(); ++g) {
    const Bf16GemmGroup& G = groups[g];
    const std::string name = "groups[" + std::to_string(g) + "]";
    if (G.rows < 0) fail(ErrorKind::Shape, api, name + ".rows: expected ≥ 0, got " + std::to_string(G.rows));
    if (G.k <= 0 || G.k % 8 != 0 || G.k > lda) {
      fail(ErrorKind::Shape, api, name + ".k: expected a positive multiple of 8 that is at most lda = " +
                                      std::to_string(lda) + ", got " + std::to_string(G.k));
    }
    if (G.n <= 0 || G.n > ld) {
      fail(ErrorKind::Shape, api, name + ".n: expected in [1, " + ldName + " = " + std::to_string(ld) + "], got " +
                                      std::to_string(G.n));
    }
    if (G.rows == 0) continue;
    checkChunkPointer(api, name + ".w", G.w);
    if (needW3) checkChunkPointer(api, name + ".w3", G.w3);
  }
  const int64_t mPad = bf16GemmRowStarts(groups).back();
  if (mPad > 0) checkChunkPointer(api, "a", a);
  return mPad;
}

std::vector<Tile> listTiles(const std::vector<Bf16GemmGroup>& groups, const char* api) {
  return paddedTiles<kTileM, kTileN>(groups, api);
}

template <Epilogue kEpilogue>
void launch(const char* api, const uint16_t* a, int lda, const std::vector<Bf16GemmGroup>& groups, const Outputs& o,
            cudaStream_t stream) {
  const std::vector<Tile> tiles = listTiles(groups, api);
  if (tiles.empty()) return;
  // The tables' host vectors end with this call: from pageable memory, cudaMemcpyAsync has copied
  // its source out before it returns.
  StreamBuffer<Bf16GemmGroup> dGroups(groups.size(), stream, "the bf16 GEMM groups");
  StreamBuffer<Tile> dTiles(tiles.size(), stream, "the bf16 GEMM tiles");
  checkCuda(copyAsync(dGroups.get(), groups.data(), groups.size() * sizeof(Bf16GemmGroup),
                            cudaMemcpyHostToDevice, stream),
            std::string(api) + ": cudaMemcpyAsync of the groups");
  checkCuda(copyAsync(dTiles.get(), tiles.data(), tiles.size() * sizeof(Tile), cudaMemcpyHostToDevice, stream),
            std::string(api) + ": cudaMemcpyAsync of the tiles");
  constexpr int kOperands = kEpilogue == Epilogue::Swiglu ? 3 : 2;
  const size_t smem = size_t(kStages) * kOperands * kSliceHalves * sizeof(uint16_t);
  checkCuda(moekit::launch<groupedGemmBf16Kernel<kEpilogue>>(dim3(unsigned(tiles.size())), dim3(kThreads), smem,
                                                             stream, a, lda, dGroups.get(), dTiles.get(), o),
            std::string(api) + ": launch of groupedGemmBf16Kernel");
}

}  // namespace

std::vector<int64_t> bf16GemmRowStarts(const std::vector<Bf16GemmGroup>& groups) {
  return paddedRowStarts<kTileM>(groups);
}

void groupedGemmBf16(const uint16_t* a, int lda, const std::vector<Bf16GemmGroup>& groups, float* out, int ldOut,
                     cudaStream_t stream) {
  const char* api = "groupedGemmBf16";
  const int64_t mPad = checkGroups(api, a, lda, groups, false, ldOut, "ldOut");
  if (mPad > 0 && !out) fail(ErrorKind::Argument, api, "out: expected a device pointer, got null");
  Outputs o;
  o.out = out;
  o.ld = ldOut;
  launch<Epilogue::Store>(api, a, lda, groups, o, stream);
}

void groupedGemmBf16Swiglu(const uint16_t* a, int lda, const std::vector<Bf16GemmGroup>& groups, float* h, float* a1,
                           float* a3, int ldOut, cudaStream_t stream) {
  const char* api = "groupedGemmBf16Swiglu";
  const int64_t mPad = checkGroups(api, a, lda, groups, true, ldOut, "ldOut");
  if (mPad > 0 && !h) fail(ErrorKind::Argument, api, "h: expected a device pointer, got null");
  Outputs o;
  o.out = h;
  o.a1 = a1;
  o.a3 = a3;
  o.ld = ldOut;
  launch<Epilogue::Swiglu>(api, a, lda, groups, o, stream);
}

}  // namespace moekit::cuda
