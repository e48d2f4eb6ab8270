// Grouped FP8 GEMM with per-block scale promotion on warpgroup MMA (sm_90a): the same contract and
// the same order of the arithmetic as the mma.sync kernel (grouped_gemm_fp8.h), so both give the
// same bits wherever the tensor cores' sums do. The wgmma wrappers are in wgmma.h (inline PTX under
// nvcc, the emulator's model of their layouts on the SIMT emulator). Tests:
// test/cuda/grouped_gemm_fp8_test.cc on an emulated sm_90.
//
// Math, per output tile: C [64,64] = Σ_kb s_kb ⊙ (A_kb · W_kbᵀ) with A the tile's rows of a, W rows
// col0..col0+63 of w_g, A_kb and W_kb their columns of K block kb (128 wide) and s_kb[r, n] =
// aScales[r, kb] · wScales_g[col0/128, kb]. P = A_kb · W_kbᵀ is 4 wgmma m64n64k32 (the first with
// scale-d = 0, so P starts from 0), then C = fmaf(P, s, C) per element.
//
// Thread mapping: one warpgroup (128 threads) per 64×64 output tile, the tiles listed by the host as
// for the mma.sync kernel. Warp w owns rows 16w..16w+15 of the tile; a thread holds 32 fp32 partials
// P and 32 accumulators C at wgmma's accumulator positions (wgmma.h), so each thread needs the
// a-scales of 2 rows (16w + g, 16w + g + 8) and the tile's one weight scale per K block.
// The inner dimension is walked one 128-wide scale block per step through a 3-stage cp.async
// pipeline. A stage holds A and W slices of 64 rows × 128 bytes in wgmma's no-swizzle K-major
// layout: core matrices of 8 rows × 16 bytes, byte (r, kb) at ⌊r/8⌋·1024 + ⌊kb/16⌋·128 +
// (r mod 8)·16 + kb mod 16 (SBO = 1024, LBO = 128); the k32 slice s of an operand starts 256·s bytes
// in. Thread i copies chunks c = i + 128q (q < 4) of each operand: row c mod 64, 16-byte column
// ⌊c/64⌋, so the 8 threads of a store phase write 8 consecutive 16-byte rows of one core matrix.
// Chunks past the group's rows, n_g or k_g are zero-filled without a read (they add 0).
// Per step kt: wait until stage kt landed (cp.async.wait_group 1), fence.proxy.async (the copies
// were generic-proxy writes; wgmma reads through the async proxy), __syncthreads, issue stage kt+2
// into the slot step kt−1 used (its wgmma completed before the barrier), commit, load the scales,
// wgmma.fence, 4 wgmma, commit, wait for them, promote.
// Smem: 3 stages × 2 × 64 × 128 bytes = 48 KiB, the default limit.
// Not done: TMA loads, swizzled layouts, a producer warpgroup and several consumer warpgroups
// (DeepGEMM's design), which hide the copies and the promotion behind the tensor cores.
#include "grouped_gemm_fp8_wgmma.h"

#include <map>
#include <mutex>

#include "../core/fp8_blocks.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "fp8_gemm_tile.cuh"
#include "grid.h"
#include "tensor_core.h"
#include "wgmma.h"

namespace moekit::cuda {

namespace {

constexpr int kTileM = kFp8GemmRowAlign;  // 64
constexpr int kTileN = 64;
constexpr int kTileK = kFp8Block;         // 128: one scale block per stage
constexpr int kStages = 3;
constexpr int kThreads = kWgmmaThreads;
constexpr int kWgmmaK = 32;
constexpr int kLeadingBytes = kCoreMatrixBytes;                               // next 16 bytes of K
constexpr int kStrideBytes = kTileK / 16 * kCoreMatrixBytes;                  // next 8 rows: 1024
constexpr int kSliceBytes = kTileM * kTileK;                                  // one operand of one stage
constexpr int kChunksPerOperand = kTileM * kTileK / 16;                       // 512
constexpr int kCopiesPerThread = kChunksPerOperand / kThreads;                // 4
constexpr int kAccumulators = kTileM * kTileN / kThreads;                     // 32
static_assert(kTileN == kTileM, "one slice size serves both operands");
static_assert(kChunksPerOperand % kThreads == 0, "every thread copies the same number of chunks");

__device__ __forceinline__ int stagedOffset(int row, int kb) {
  return row / kCoreMatrixRows * kStrideBytes + kb / 16 * kLeadingBytes + row % kCoreMatrixRows * 16 + kb % 16;
}

__device__ __forceinline__ void loadStage(uint8_t* stage, const uint8_t* aTile, int64_t lda, int rows, const uint8_t* w,
                                          int k, int cols, int k0, const uint8_t* anyValid) {
  MOEKIT_UNROLL
  for (int q = 0; q < kCopiesPerThread; ++q) {
    const int c = int(threadIdx.x) + q * kThreads;
    const int row = c % kTileM, kk = c / kTileM * 16;
    const bool kIn = k0 + kk < k;
    uint8_t* dst = stage + stagedOffset(row, kk);
    const bool aIn = kIn && row < rows;
    cpAsync16OrZero(dst, aIn ? aTile + row * lda + k0 + kk : anyValid, aIn);
    const bool wIn = kIn && row < cols;
    cpAsync16OrZero(dst + kSliceBytes, wIn ? w + int64_t(row) * k + k0 + kk : anyValid, wIn);
  }
}

__global__ void __launch_bounds__(kThreads)
    groupedGemmFp8WgmmaKernel(const uint8_t* a, int lda, const float* aScales, int ldaScales, const Fp8GemmGroup* groups,
                              const PaddedTile* tiles, float* out, int ldOut) {
  uint8_t* smem = moekit::dynamicShared<uint8_t>();
  const PaddedTile tile = tiles[blockIdx.x];
  const Fp8GemmGroup group = groups[tile.group];
  const auto [aTile, w, wScales, cols] = fp8TileOperands<kTileN>(a, lda, tile, group);
  const int kSteps = int(fp8BlockCount(group.k));
  const auto stage = [smem](int s) { return smem + s * 2 * kSliceBytes; };

  MOEKIT_UNROLL
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < kSteps) loadStage(stage(s), aTile, lda, tile.rows, w, group.k, cols, s * kTileK, a);
    cpAsyncCommit();
  }
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, g = lane / 4, t = lane % 4;
  float acc[kAccumulators] = {};
  float partial[kAccumulators] = {};
  for (int kt = 0; kt < kSteps; ++kt) {
    cpAsyncWait<kStages - 2>();
    fenceProxyAsync();
    __syncthreads();
    const int next = kt + kStages - 1;
    if (next < kSteps) loadStage(stage(next % kStages), aTile, lda, tile.rows, w, group.k, cols, next * kTileK, a);
    cpAsyncCommit();
    float sa[2];  // a-scales of this thread's rows 16·warp + g + 8·half
    MOEKIT_UNROLL
    for (int half = 0; half < 2; ++half) {
      const int row = 16 * warp + g + 8 * half;
      sa[half] = row < tile.rows ? aScales[(tile.row0 + row) * ldaScales + kt] : 0.0f;
    }
    const float sb = wScales[kt];
    const uint8_t* slice = stage(kt % kStages);
    wgmmaFence();
    MOEKIT_UNROLL
    for (int s = 0; s < kTileK / kWgmmaK; ++s) {
      const uint64_t descA = wgmmaDescriptor(slice + s * 2 * kLeadingBytes, kLeadingBytes, kStrideBytes);
      const uint64_t descW = wgmmaDescriptor(slice + kSliceBytes + s * 2 * kLeadingBytes, kLeadingBytes, kStrideBytes);
      wgmmaE4m3m64n64k32(partial, descA, descW, s > 0);
    }
    wgmmaCommit();
    wgmmaWait<0>(partial);
    MOEKIT_UNROLL
    for (int i = 0; i < kAccumulators; ++i) acc[i] = fmaf(partial[i], sa[i % 4 / 2] * sb, acc[i]);
  }

  MOEKIT_UNROLL
  for (int i = 0; i < kAccumulators; ++i) {
    const int row = 16 * warp + g + 8 * (i % 4 / 2), col = 8 * (i / 4) + 2 * t + i % 2;
    if (row < tile.rows && col < cols) out[(tile.row0 + row) * ldOut + tile.col0 + col] = acc[i];
  }
}

// 1 in the code built with the wgmma instructions (sm_90a) and on the emulator, 0 in the others:
// the device reads the copy of the code it loaded.
#if defined(MOEKIT_WGMMA) || defined(MOEKIT_EMU)
__device__ int wgmmaInLoadedCode = 1;
#else
__device__ int wgmmaInLoadedCode = 0;
#endif

}  // namespace

bool fp8WgmmaLoaded(int device) {
  static std::mutex mutex;
  static std::map<int, bool> loaded;  // per device: the code a device loaded does not change
  std::lock_guard<std::mutex> lock(mutex);
  const auto known = loaded.find(device);
  if (known != loaded.end()) return known->second;
  int current = 0, flag = 0;
  checkCuda(cudaGetDevice(&current), "groupedGemmFp8: cudaGetDevice");
  checkCuda(cudaSetDevice(device), "groupedGemmFp8: cudaSetDevice");
  const cudaError_t read = copyFromSymbol(&flag, wgmmaInLoadedCode, sizeof flag);
  checkCuda(cudaSetDevice(current), "groupedGemmFp8: cudaSetDevice");
  checkCuda(read, "groupedGemmFp8: cudaMemcpyFromSymbol");
  return loaded[device] = flag == 1;
}

cudaError_t launchGroupedGemmFp8Wgmma(const uint8_t* a, int lda, const float* aScales, int ldaScales,
                                      const Fp8GemmGroup* groups, const PaddedTile* tiles, int tileCount, float* out,
                                      int ldOut, cudaStream_t stream) {
  const size_t smem = size_t(kStages) * 2 * kSliceBytes;
  return moekit::launch<groupedGemmFp8WgmmaKernel>(dim3(unsigned(tileCount)), dim3(kThreads), smem, stream, a, lda,
                                                   aScales, ldaScales, groups, tiles, out, ldOut);
}

}  // namespace moekit::cuda
