// Operand rounding of the precision modes on the device (precision_operands.h).
//
// Math (core/precision.h, the functions the CPU side calls):
//   roundBf16Kernel      out[i] = decodeBF16(encodeBF16(in[i]))                (RNE, NaN kept)
//   fp8RoundTripKernel   out[i] = decode(code[i]) · s, the codes and scales of quantizeFp8Blocks
//                        (F2), s at [matrix, row / blockRows, col / 128] of the scale grid
// Thread mapping: both are elementwise, one thread per element over a grid-stride loop (256
// threads per block), consecutive threads on consecutive elements.
#include "precision_operands.h"

#include <string>

#include "../core/precision.h"
#include "emu/launch.h"
#include "grid.h"
#include "quantize_fp8.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void roundBf16Kernel(const float* in, int64_t n, float* out) {
  for (int64_t i = globalThread(); i < n; i += gridThreads()) out[i] = moekit::roundBf16(in[i]);
}

__global__ void fp8RoundTripKernel(const uint8_t* codes, int64_t rows, int64_t cols, int blockRows,
                                   const float* scales, int64_t n, float* out) {
  const int64_t rowBlocks = fp8BlockCount(rows, blockRows), colBlocks = fp8BlockCount(cols);
  for (int64_t i = globalThread(); i < n; i += gridThreads()) {
    const int64_t matrix = i / (rows * cols), r = (i / cols) % rows, c = i % cols;
    const float scale = scales[(matrix * rowBlocks + r / blockRows) * colBlocks + c / kFp8Block];
    out[i] = fp8Value(codes[i], scale);
  }
}

}  // namespace

void roundBf16(const float* in, int64_t n, float* out, cudaStream_t stream) {
  if (n == 0) return;
  checkLaunch(moekit::launch<roundBf16Kernel>(gridBlocks(n, kThreads, 4096), kThreads, 0, stream, in, n, out),
              "roundBf16Kernel");
}

void fp8RoundTrip(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                  DeviceBuffer<uint8_t>& codes, DeviceBuffer<float>& scales, float* out,
                  cudaStream_t stream) {
  const int64_t n = matrices * rows * cols;
  if (n == 0) return;
  const int64_t grid = matrices * fp8BlockCount(rows, blockRows) * fp8BlockCount(cols);
  uint8_t* dCodes = codes.reserve(size_t(n), "fp8 codes");
  float* dScales = scales.reserve(size_t(grid), "fp8 scales");
  quantizeFp8Blocks(x, matrices, rows, cols, blockRows, Fp8Format::E4M3, dCodes, dScales, stream);
  checkLaunch(moekit::launch<fp8RoundTripKernel>(gridBlocks(n, kThreads, 4096), kThreads, 0, stream, dCodes, rows,
                                                  cols, blockRows, dScales, n, out),
              "fp8RoundTripKernel");
}

}  // namespace moekit::cuda
