#include "precision_operands.h"

#include <vector>

#include "../core/precision.h"
#include "fp8.h"
#include "thread_pool.h"

namespace moekit::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;  // elements per parallel chunk
}  // namespace

void roundBf16(const float* in, int64_t n, float* out) {
  parallelFor(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = moekit::roundBf16(in[i]);
  });
}

void fp8RoundTrip(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows, float* out) {
  const int64_t n = matrices * rows * cols;
  if (n == 0) return;
  const int64_t rowBlocks = fp8BlockCount(rows, blockRows), colBlocks = fp8BlockCount(cols);
  std::vector<uint8_t> codes(static_cast<size_t>(n));
  std::vector<float> scales(size_t(matrices * rowBlocks * colBlocks));
  quantizeFp8Blocks(x, matrices, rows, cols, blockRows, Fp8Format::E4M3, codes.data(), scales.data());
  parallelFor(0, n, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t matrix = i / (rows * cols), r = (i / cols) % rows, c = i % cols;
      const float scale = scales[size_t((matrix * rowBlocks + r / blockRows) * colBlocks + c / kFp8Block)];
      out[i] = fp8Value(codes[size_t(i)], scale);
    }
  });
}

}  // namespace moekit::cpu
