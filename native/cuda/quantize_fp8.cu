// FP8 block quantisation on the device (quantize_fp8.h: layouts, requirements).
//
// Math, per block B (core/fp8_blocks.h, DESIGN F2): amax = max over B of |x| (NaN sticky,
// fp8AmaxMerge), scale = fp8BlockScale(amax) = amax / fmax in fp32 (1 when 0), code of x =
// fp8Quantize(x, scale) = encode(x / scale), an IEEE fp32 division (this file must not be built
// with fast math) and the saturating RNE encoder of core/minifloat.h. Max is exact and
// order-independent on non-NaN values, so the device's merge order gives the CPU's amax.
//
// Thread mapping:
//   quantizeRowBlocksKernel   1 × 128 blocks (activations). One warp per block, 8 warps per
//                             256-thread CUDA block over the list of (row, 128-column block) of all
//                             matrices; lane l holds columns c0 + l + 32j, j < 4 (a warp reads 32
//                             consecutive floats per j), the lane maxima merge by an xor butterfly,
//                             lane 0 stores the scale and every lane its ≤ 4 codes.
//   quantizeTileBlocksKernel  128 × 128 blocks (weights). One 256-thread CUDA block per block:
//                             thread i takes column i % 128 of rows i / 128, i / 128 + 2, … (64
//                             rows; a warp reads 32 consecutive floats of one row), warp maxima by
//                             an xor butterfly, the 8 warp maxima through shared memory, merged by
//                             every thread in warp order; thread 0 stores the scale, then every
//                             thread re-reads its elements and stores their codes.
#include "quantize_fp8.h"

#include <string>

#include "../core/errors.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kLaneColumns = kFp8Block / 32;      // columns per lane in a 1 × 128 block
constexpr int kTileRowsPerPass = kThreads / kFp8Block;  // rows one pass of a 128 × 128 block covers
constexpr int64_t kMaxGridX = 2147483647;

__device__ __forceinline__ float warpAmax(float amax) {
  MOEKIT_UNROLL
  for (int offset = 16; offset > 0; offset /= 2) amax = fp8AmaxMerge(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
  return amax;
}

// blocks = rows · colBlocks over all matrices (rows of every matrix, stacked).
__global__ void __launch_bounds__(kThreads)
    quantizeRowBlocksKernel(const float* x, int64_t blocks, int64_t cols, int64_t colBlocks, Fp8Format format,
                            uint8_t* codes, float* scales) {
  const int64_t block = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (block >= blocks) return;  // the whole warp leaves together
  const int lane = int(threadIdx.x) % 32;
  const int64_t row = block / colBlocks, c0 = block % colBlocks * kFp8Block;
  const float* xRow = x + row * cols;
  float amax = 0.0f;
  MOEKIT_UNROLL
  for (int j = 0; j < kLaneColumns; ++j) {
    const int64_t c = c0 + lane + 32 * j;
    if (c < cols) amax = fp8AmaxMerge(amax, fabsf(xRow[c]));
  }
  const float scale = fp8BlockScale(warpAmax(amax), format);
  if (lane == 0) scales[block] = scale;
  MOEKIT_UNROLL
  for (int j = 0; j < kLaneColumns; ++j) {
    const int64_t c = c0 + lane + 32 * j;
    if (c < cols) codes[row * cols + c] = fp8Quantize(xRow[c], scale, format);
  }
}

// One CUDA block per 128 × 128 block: blockIdx.x = (matrix · rowBlocks + rb) · colBlocks + cb.
__global__ void __launch_bounds__(kThreads)
    quantizeTileBlocksKernel(const float* x, int64_t rows, int64_t cols, int64_t rowBlocks, int64_t colBlocks,
                             Fp8Format format, uint8_t* codes, float* scales) {
  __shared__ float warpMax[kWarps];
  const int64_t block = blockIdx.x;
  const int64_t matrix = block / (rowBlocks * colBlocks), rb = block / colBlocks % rowBlocks, cb = block % colBlocks;
  const int64_t c = cb * kFp8Block + int(threadIdx.x) % kFp8Block;
  const int64_t r0 = rb * kFp8Block, r1 = r0 + kFp8Block < rows ? r0 + kFp8Block : rows;
  const int64_t firstRow = r0 + int(threadIdx.x) / kFp8Block;
  const float* xm = x + matrix * rows * cols;
  float amax = 0.0f;
  if (c < cols)
    for (int64_t r = firstRow; r < r1; r += kTileRowsPerPass) amax = fp8AmaxMerge(amax, fabsf(xm[r * cols + c]));
  amax = warpAmax(amax);
  if (threadIdx.x % 32 == 0) warpMax[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = warpMax[0];
  MOEKIT_UNROLL
  for (int w = 1; w < kWarps; ++w) amax = fp8AmaxMerge(amax, warpMax[w]);
  const float scale = fp8BlockScale(amax, format);
  if (threadIdx.x == 0) scales[block] = scale;
  if (c >= cols) return;
  uint8_t* cm = codes + matrix * rows * cols;
  for (int64_t r = firstRow; r < r1; r += kTileRowsPerPass) cm[r * cols + c] = fp8Quantize(xm[r * cols + c], scale, format);
}

}  // namespace

void quantizeFp8Blocks(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                       Fp8Format format, uint8_t* codes, float* scales, cudaStream_t stream) {
  const std::string api = "cuda::quantizeFp8Blocks";
  if (matrices < 0 || rows < 0 || cols < 0) {
    throw Error(ErrorKind::Shape, api + ": matrices, rows, cols: expected ≥ 0, got " + std::to_string(matrices) +
                                      ", " + std::to_string(rows) + ", " + std::to_string(cols));
  }
  if (blockRows != 1 && blockRows != kFp8Block) {
    throw Error(ErrorKind::Argument, api + ": blockRows: expected 1 or 128, got " + std::to_string(blockRows));
  }
  if (format != Fp8Format::E4M3 && format != Fp8Format::E5M2) {
    throw Error(ErrorKind::Argument, api + ": format: expected E4M3 or E5M2, got " + std::to_string(int(format)));
  }
  if (matrices == 0 || rows == 0 || cols == 0) return;
  if (!x) throw Error(ErrorKind::Argument, api + ": x: expected a device pointer, got null");
  if (!codes) throw Error(ErrorKind::Argument, api + ": codes: expected a device pointer, got null");
  if (!scales) throw Error(ErrorKind::Argument, api + ": scales: expected a device pointer, got null");
  const int64_t colBlocks = fp8BlockCount(cols);
  if (blockRows == 1) {
    const int64_t blocks = matrices * rows * colBlocks, grid = (blocks + kWarps - 1) / kWarps;
    if (grid > kMaxGridX) {
      throw Error(ErrorKind::Shape, api + ": x: " + std::to_string(blocks) + " blocks of 1 × 128 exceed CUDA's grid limit");
    }
    checkCuda(launch<quantizeRowBlocksKernel>(dim3(unsigned(grid)), dim3(kThreads), 0, stream, x, blocks, cols,
                                              colBlocks, format, codes, scales),
              api + ": launch of quantizeRowBlocksKernel");
    return;
  }
  const int64_t rowBlocks = fp8BlockCount(rows), blocks = matrices * rowBlocks * colBlocks;
  if (blocks > kMaxGridX) {
    throw Error(ErrorKind::Shape, api + ": x: " + std::to_string(blocks) + " blocks of 128 × 128 exceed CUDA's grid limit");
  }
  checkCuda(launch<quantizeTileBlocksKernel>(dim3(unsigned(blocks)), dim3(kThreads), 0, stream, x, rows, cols, rowBlocks,
                                             colBlocks, format, codes, scales),
            api + ": launch of quantizeTileBlocksKernel");
}

void quantizeActivationsFp8(const float* a, int64_t m, int64_t k, Fp8Format format, uint8_t* codes, float* scales,
                            cudaStream_t stream) {
  quantizeFp8Blocks(a, 1, m, k, 1, format, codes, scales, stream);
}

void quantizeWeightsFp8(const float* w, int64_t groups, int64_t n, int64_t k, Fp8Format format, uint8_t* codes,
                        float* scales, cudaStream_t stream) {
  quantizeFp8Blocks(w, groups, n, k, kFp8Block, format, codes, scales, stream);
}

}  // namespace moekit::cuda
