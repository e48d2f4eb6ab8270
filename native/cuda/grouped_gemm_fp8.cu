// Grouped FP8 GEMM with per-block scale promotion (grouped_gemm_fp8.h: layout, order of the
// arithmetic, requirements). The tensor-core instructions come from tensor_core.h (inline PTX under
// nvcc, emulated lane data movement on the SIMT emulator). CPU reference:
// cpu::groupedGemmFp8Reference (cpu/fp8.h); tests: test/cuda/grouped_gemm_fp8_test.cc.
//
// Math, per output tile: C [64,64] = Σ_kb s_kb ⊙ (A_kb · W_kbᵀ) with A the tile's rows of a, W rows
// col0..col0+63 of w_g, A_kb and W_kb their columns of K block kb (128 wide), and s_kb[r, n] =
// aScales[r, kb] · wScales_g[col0/128, kb]: the column tile lies inside one 128-row block of w_g,
// so one weight scale per K block serves the whole tile. Each block's product P = A_kb · W_kbᵀ is
// accumulated by the mma in fp32 registers starting from 0, then promoted: C = fmaf(P, s, C).
//
// Thread mapping: one block of 128 threads (4 warps) per 64×64 output tile, the tiles listed by the
// host as in grouped_gemm_bf16.cu (each row tile of a group crossed with its ⌈n_g/64⌉ column tiles).
// Warp w owns the 32×32 quadrant (w/2, w%2): 2×4 mma tiles of 16×8, 32 fp32 accumulators C and
// 32 fp32 block partials P per lane. The inner dimension is walked in steps of BK = 64 (2 steps per
// scale block) through a 3-stage cp.async pipeline: stage s holds A and W slices [64][64] e4m3,
// rows padded to 80 bytes (the bf16 kernel's byte layout: every row 16-byte aligned for cp.async
// and ldmatrix, and the 8 rows one ldmatrix reads fall in 8 distinct 16-byte bank groups). Each
// thread copies 2 chunks of 16 bytes per operand and stage; chunks past the group's rows, n_g or
// k_g are zero-filled without a read (padding rows, tails of n and k contribute 0). Per BK, each
// warp does 2 k-steps of 32: 2 ldmatrix.x4 (b16 pairs = 4 e4m3 per register, exactly the m16n8k32
// fragments) for A, 2 for W (two n8 tiles each, W [n][k] read untransposed), then 8 mma.sync
// m16n8k32. At the first step of a scale block each lane loads the a-scales of its 4 rows (not for
// rows past the group) and the tile's weight scale; after the block's last step (or the last step
// of K) it promotes its 32 partials and clears them. Pipeline per step kt as in the bf16 kernel:
// wait until stage kt landed (cp.async.wait_group 1), __syncthreads, issue stage kt+2, commit (an
// empty group past the end), compute stage kt.
// Smem: 3 stages × 2 × 64 × 80 bytes = 30 KiB, under the 48 KiB default.
#include "grouped_gemm_fp8.h"

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../core/errors.h"
#include "../core/fp8_blocks.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "fp8_gemm_tile.cuh"
#include "grid.h"
#include "grouped_gemm_fp8_wgmma.h"
#include "stream_buffer.h"
#include "padded_groups.h"
#include "tensor_core.h"

namespace moekit::cuda {

namespace {

constexpr int kTileM = kFp8GemmRowAlign;  // 64
constexpr int kTileN = 64;
constexpr int kTileK = 64;                // e4m3 elements (bytes) of a stage row
constexpr int kStages = 3;
constexpr int kThreads = 128;
constexpr int kStepsPerScaleBlock = kFp8Block / kTileK;             // 2
constexpr int kRowBytes = kTileK + 16;                              // staged row: 64 codes + 16 of padding
constexpr int kSliceBytes = kTileM * kRowBytes;                     // one operand of one stage
constexpr int kChunksPerRow = kTileK / 16;                          // 16-byte chunks
constexpr int kCopiesPerThread = kTileM * kChunksPerRow / kThreads;  // 2
constexpr int kMmaK = 32;
constexpr int kWarpTile = 32;
constexpr int kMmaRows = kWarpTile / 16;  // m16 tiles per warp
constexpr int kMmaCols = kWarpTile / 8;   // n8 tiles per warp
static_assert(kTileN == kTileM, "one slice size serves both operands");
static_assert(kFp8Block % kTileK == 0, "a stage lies inside one 128-wide K scale block");
static_assert(kTileM * kChunksPerRow % kThreads == 0, "every thread copies the same number of chunks");

using Tile = PaddedTile;

__device__ __forceinline__ void loadStage(uint8_t* stage, const uint8_t* aTile, int64_t lda, int rows, const uint8_t* w,
                                          int k, int cols, int k0, const uint8_t* anyValid) {
  MOEKIT_UNROLL
  for (int q = 0; q < kCopiesPerThread; ++q) {
    const int c = int(threadIdx.x) + q * kThreads;
    const int row = c / kChunksPerRow, kk = (c % kChunksPerRow) * 16;
    const bool kIn = k0 + kk < k;
    uint8_t* dst = stage + row * kRowBytes + kk;
    const bool aIn = kIn && row < rows;
    cpAsync16OrZero(dst, aIn ? aTile + row * lda + k0 + kk : anyValid, aIn);
    const bool wIn = kIn && row < cols;
    cpAsync16OrZero(dst + kSliceBytes, wIn ? w + int64_t(row) * k + k0 + kk : anyValid, wIn);
  }
}

// partial += A_stage · W_stageᵀ on this warp's quadrant.
__device__ __forceinline__ void multiplyStage(const uint8_t* stage, int warpRow, int warpCol,
                                              float (&partial)[kMmaRows][kMmaCols][4]) {
  const int lane = int(threadIdx.x) % 32;
  const uint8_t* w = stage + kSliceBytes;
  MOEKIT_UNROLL
  for (int kk = 0; kk < kTileK; kk += kMmaK) {
    uint32_t a[kMmaRows][4];
    MOEKIT_UNROLL
    for (int i = 0; i < kMmaRows; ++i)
      ldmatrixX4(a[i], stage + (warpRow + 16 * i + lane % 16) * kRowBytes + kk + 16 * (lane / 16));
    uint32_t b[kMmaCols / 2][4];  // x4 = (b0, b1) of two n8 tiles
    MOEKIT_UNROLL
    for (int j = 0; j < kMmaCols / 2; ++j)
      ldmatrixX4(b[j], w + (warpCol + 16 * j + lane % 8 + 8 * (lane / 16)) * kRowBytes + kk + 16 * (lane / 8 % 2));
    MOEKIT_UNROLL
    for (int i = 0; i < kMmaRows; ++i) {
      MOEKIT_UNROLL
      for (int j = 0; j < kMmaCols; ++j) {
        const uint32_t bj[2] = {b[j / 2][2 * (j % 2)], b[j / 2][2 * (j % 2) + 1]};
        mmaE4m3m16n8k32(partial[i][j], a[i], bj);
      }
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    groupedGemmFp8Kernel(const uint8_t* a, int lda, const float* aScales, int ldaScales, const Fp8GemmGroup* groups,
                         const Tile* tiles, float* out, int ldOut) {
  uint8_t* smem = moekit::dynamicShared<uint8_t>();
  const Tile tile = tiles[blockIdx.x];
  const Fp8GemmGroup group = groups[tile.group];
  const auto [aTile, w, wScales, cols] = fp8TileOperands<kTileN>(a, lda, tile, group);
  const int kSteps = (group.k + kTileK - 1) / kTileK;
  const auto stage = [smem](int s) { return smem + s * 2 * kSliceBytes; };

  MOEKIT_UNROLL
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < kSteps) loadStage(stage(s), aTile, lda, tile.rows, w, group.k, cols, s * kTileK, a);
    cpAsyncCommit();
  }
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
  const int warpRow = kWarpTile * (warp / 2), warpCol = kWarpTile * (warp % 2);
  float acc[kMmaRows][kMmaCols][4] = {};
  float partial[kMmaRows][kMmaCols][4] = {};
  float sa[kMmaRows][2] = {};  // a-scales of this lane's rows warpRow + 16i + g + 8·half
  float sb = 0.0f;
  for (int kt = 0; kt < kSteps; ++kt) {
    cpAsyncWait<kStages - 2>();
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < kSteps) loadStage(stage(next % kStages), aTile, lda, tile.rows, w, group.k, cols, next * kTileK, a);
    cpAsyncCommit();
    const int kb = kt / kStepsPerScaleBlock;
    if (kt % kStepsPerScaleBlock == 0) {
      MOEKIT_UNROLL
      for (int i = 0; i < kMmaRows; ++i) {
        MOEKIT_UNROLL
        for (int half = 0; half < 2; ++half) {
          const int row = warpRow + 16 * i + g + 8 * half;
          sa[i][half] = row < tile.rows ? aScales[(tile.row0 + row) * ldaScales + kb] : 0.0f;
        }
      }
      sb = wScales[kb];
    }
    multiplyStage(stage(kt % kStages), warpRow, warpCol, partial);
    if (kt % kStepsPerScaleBlock == kStepsPerScaleBlock - 1 || kt == kSteps - 1) {
      MOEKIT_UNROLL
      for (int i = 0; i < kMmaRows; ++i) {
        MOEKIT_UNROLL
        for (int half = 0; half < 2; ++half) {
          const float s = sa[i][half] * sb;
          MOEKIT_UNROLL
          for (int j = 0; j < kMmaCols; ++j) {
            MOEKIT_UNROLL
            for (int e = 0; e < 2; ++e) {
              float& p = partial[i][j][2 * half + e];
              acc[i][j][2 * half + e] = fmaf(p, s, acc[i][j][2 * half + e]);
              p = 0.0f;
            }
          }
        }
      }
    }
  }

  MOEKIT_UNROLL
  for (int i = 0; i < kMmaRows; ++i) {
    MOEKIT_UNROLL
    for (int half = 0; half < 2; ++half) {
      const int row = warpRow + 16 * i + g + 8 * half;
      if (row >= tile.rows) continue;
      float* outRow = out + (tile.row0 + row) * ldOut + tile.col0;
      MOEKIT_UNROLL
      for (int j = 0; j < kMmaCols; ++j) {
        MOEKIT_UNROLL
        for (int e = 0; e < 2; ++e) {
          const int col = warpCol + 8 * j + 2 * t + e;
          if (col < cols) outRow[col] = acc[i][j][2 * half + e];
        }
      }
    }
  }
}

[[noreturn]] void fail(ErrorKind kind, const char* api, const std::string& message) {
  throw Error(kind, std::string(api) + ": " + message);
}


void checkNotNull(const char* api, const std::string& name, const void* p) {
  if (!p) fail(ErrorKind::Argument, api, name + ": expected a device pointer, got null");
}

// Validates everything but the device; returns Mpad.
int64_t checkArguments(const char* api, const uint8_t* a, int lda, const float* aScales, int ldaScales,
                       const std::vector<Fp8GemmGroup>& groups, const float* out, int ldOut) {
  if (lda <= 0 || lda % 16 != 0) fail(ErrorKind::Shape, api, "lda: expected a positive multiple of 16, got " + std::to_string(lda));
  if (ldaScales <= 0) fail(ErrorKind::Shape, api, "ldaScales: expected ≥ 1, got " + std::to_string(ldaScales));
  if (ldOut <= 0) fail(ErrorKind::Shape, api, "ldOut: expected ≥ 1, got " + std::to_string(ldOut));
  for (size_t g = 0; g < groups.size(); ++g) {
    const Fp8GemmGroup& G = groups[g];
    const std::string name = "groups[" + std::to_string(g) + "]";
    if (G.rows < 0) fail(ErrorKind::Shape, api, name + ".rows: expected ≥ 0, got " + std::to_string(G.rows));
    if (G.k <= 0 || G.k % 16 != 0 || G.k > lda) {
      fail(ErrorKind::Shape, api, name + ".k: expected a positive multiple of 16 that is at most lda = " +
                                      std::to_string(lda) + ", got " + std::to_string(G.k));
    }
    if (fp8BlockCount(G.k) > ldaScales) {
      fail(ErrorKind::Shape, api, name + ".k: expected at most 128 · ldaScales = " + std::to_string(128 * int64_t(ldaScales)) +
                                      " (one a-scale per 128 columns), got " + std::to_string(G.k));
    }
    if (G.n <= 0 || G.n > ldOut) {
      fail(ErrorKind::Shape, api, name + ".n: expected in [1, ldOut = " + std::to_string(ldOut) + "], got " +
                                      std::to_string(G.n));
    }
    if (G.rows == 0) continue;
    checkChunkPointer(api, name + ".w", G.w);
    checkNotNull(api, name + ".wScales", G.wScales);
  }
  const int64_t mPad = fp8GemmRowStarts(groups).back();
  if (mPad > 0) {
    checkChunkPointer(api, "a", a);
    checkNotNull(api, "aScales", aScales);
    checkNotNull(api, "out", out);
  }
  return mPad;
}

std::vector<Tile> listTiles(const std::vector<Fp8GemmGroup>& groups, const char* api) {
  return paddedTiles<kTileM, kTileN>(groups, api);
}

}  // namespace

Fp8GemmKernel fp8GemmKernel(int device) {
  const char* api = "groupedGemmFp8";
  requireFp8Mma(device, api);
  const char* forced = std::getenv("MOEKIT_FP8_KERNEL");
  if (forced && *forced) {
    if (std::strcmp(forced, "mma.sync") != 0) {
      fail(ErrorKind::Argument, api, std::string("MOEKIT_FP8_KERNEL: expected mma.sync or unset, got ") + forced);
    }
    return Fp8GemmKernel::MmaSync;
  }
  int major = 0, minor = 0;
  checkCuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), std::string(api) + ": cudaDeviceGetAttribute");
  checkCuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), std::string(api) + ": cudaDeviceGetAttribute");
  return major == 9 && minor == 0 && fp8WgmmaLoaded(device) ? Fp8GemmKernel::Wgmma : Fp8GemmKernel::MmaSync;
}

std::vector<int64_t> fp8GemmRowStarts(const std::vector<Fp8GemmGroup>& groups) {
  return paddedRowStarts<kTileM>(groups);
}

void groupedGemmFp8(const uint8_t* a, int lda, const float* aScales, int ldaScales,
                    const std::vector<Fp8GemmGroup>& groups, float* out, int ldOut, cudaStream_t stream) {
  const char* api = "groupedGemmFp8";
  checkArguments(api, a, lda, aScales, ldaScales, groups, out, ldOut);
  int device = 0;
  checkCuda(cudaGetDevice(&device), std::string(api) + ": cudaGetDevice");
  const Fp8GemmKernel kernel = fp8GemmKernel(device);
  const std::vector<Tile> tiles = listTiles(groups, api);
  if (tiles.empty()) return;
  // The tables' host vectors end with this call: from pageable memory, cudaMemcpyAsync has copied
  // its source out before it returns.
  StreamBuffer<Fp8GemmGroup> dGroups(groups.size(), stream, "the fp8 GEMM groups");
  StreamBuffer<Tile> dTiles(tiles.size(), stream, "the fp8 GEMM tiles");
  checkCuda(copyAsync(dGroups.get(), groups.data(), groups.size() * sizeof(Fp8GemmGroup), cudaMemcpyHostToDevice,
                            stream),
            std::string(api) + ": cudaMemcpyAsync of the groups");
  checkCuda(copyAsync(dTiles.get(), tiles.data(), tiles.size() * sizeof(Tile), cudaMemcpyHostToDevice, stream),
            std::string(api) + ": cudaMemcpyAsync of the tiles");
  if (kernel == Fp8GemmKernel::Wgmma) {
    checkCuda(launchGroupedGemmFp8Wgmma(a, lda, aScales, ldaScales, dGroups.get(), dTiles.get(), int(tiles.size()), out,
                                        ldOut, stream),
              std::string(api) + ": launch of groupedGemmFp8WgmmaKernel");
    return;
  }
  const size_t smem = size_t(kStages) * 2 * kSliceBytes;
  checkCuda(moekit::launch<groupedGemmFp8Kernel>(dim3(unsigned(tiles.size())), dim3(kThreads), smem, stream, a, lda,
                                                 aScales, ldaScales, dGroups.get(), dTiles.get(), out, ldOut),
            std::string(api) + ": launch of groupedGemmFp8Kernel");
}

}  // namespace moekit::cuda
