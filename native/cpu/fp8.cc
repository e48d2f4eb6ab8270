#include "fp8.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "thread_pool.h"

namespace moekit::cpu {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

// decode(code) as float64 for all 256 codes of a format.
using DecodeTable = std::array<double, 256>;

DecodeTable makeDecodeTable(Fp8Format format) {
  DecodeTable table;
  for (int code = 0; code < 256; ++code) table[size_t(code)] = fp8Decode(uint8_t(code), format);
  return table;
}

const DecodeTable& decodeTable(Fp8Format format) {
  static const DecodeTable e4m3 = makeDecodeTable(Fp8Format::E4M3);
  static const DecodeTable e5m2 = makeDecodeTable(Fp8Format::E5M2);
  return format == Fp8Format::E4M3 ? e4m3 : e5m2;
}

// The GEMM's work split and register tile: a task is up to kRowTile rows of one group; within a
// 128-column block of N, kMr × kNr tiles of out are summed over one K block in registers.
constexpr int64_t kRowTile = 32;
constexpr int kMr = 4, kNr = 4;

// `count` rows of a matrix with row stride `stride`, columns [col0, col0 + kLen), decoded and
// packed as tiles of `tile` rows: packed[(t·kLen + kk)·tile + i] = row t·tile + i at column kk,
// 0 past the last row.
void packPanel(const uint8_t* rows, int64_t stride, int64_t count, int64_t col0, int kLen, int tile,
               const DecodeTable& table, double* packed) {
  for (int64_t t = 0; t * tile < count; ++t)
    for (int i = 0; i < tile; ++i) {
      const int64_t r = t * tile + i;
      double* dst = packed + t * kLen * tile + i;
      if (r >= count) {
        for (int kk = 0; kk < kLen; ++kk) dst[kk * tile] = 0.0;
        continue;
      }
      const uint8_t* src = rows + r * stride + col0;
      for (int kk = 0; kk < kLen; ++kk) dst[kk * tile] = table[src[kk]];
    }
}

// sum[i][j] = Σ_kk a[kk·kMr + i] · b[kk·kNr + j]: exact for e4m3 operands (fp8.h).
void blockProducts(const double* a, const double* b, int kLen, double sum[kMr][kNr]) {
  for (int i = 0; i < kMr; ++i)
    for (int j = 0; j < kNr; ++j) sum[i][j] = 0.0;
  for (int kk = 0; kk < kLen; ++kk)
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) sum[i][j] += a[kk * kMr + i] * b[kk * kNr + j];
}

struct GemmTask {
  int group;
  int64_t row0, rows;
};

void checkGroupedGemmFp8(const uint8_t* a, const float* aScales, const uint8_t* w, const float* wScales,
                         const int32_t* groupRows, int groups, int64_t m, int n, int k, const float* out) {
  if (groups < 1) throw Error(ErrorKind::Argument, "groupedGemmFp8: groups must be at least 1, got " + str(groups));
  if (m < 0 || n < 1 || k < 1)
    throw Error(ErrorKind::Shape, "groupedGemmFp8: expected M >= 0, N >= 1, K >= 1, got M = " + str(m) +
                                      ", N = " + str(n) + ", K = " + str(k));
  if (!groupRows) throw Error(ErrorKind::Argument, "groupedGemmFp8: groupRows must not be null");
  int64_t total = 0;
  for (int g = 0; g < groups; ++g) {
    if (groupRows[g] < 0)
      throw Error(ErrorKind::Argument, "groupedGemmFp8: groupRows[" + str(g) + "] must be >= 0, got " + str(groupRows[g]));
    total += groupRows[g];
  }
  if (total != m)
    throw Error(ErrorKind::Shape, "groupedGemmFp8: groupRows must sum to the rows of a (" + str(m) + "), got " + str(total));
  if (!w || !wScales) throw Error(ErrorKind::Argument, "groupedGemmFp8: w and wScales must not be null");
  if (m > 0 && (!a || !aScales || !out))
    throw Error(ErrorKind::Argument, "groupedGemmFp8: a, aScales and out must not be null");
}

}  // namespace

void quantizeFp8Blocks(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                       Fp8Format format, uint8_t* codes, float* scales) {
  if (matrices < 0 || rows < 0 || cols < 0)
    throw Error(ErrorKind::Shape, "quantizeFp8: expected matrices, rows, cols >= 0, got " + str(matrices) + ", " +
                                      str(rows) + ", " + str(cols));
  if (blockRows != 1 && blockRows != kFp8Block)
    throw Error(ErrorKind::Argument, "quantizeFp8: blockRows must be 1 or 128, got " + str(blockRows));
  const int64_t rowBlocks = fp8BlockCount(rows, blockRows), colBlocks = fp8BlockCount(cols);
  if (matrices * rows * cols > 0 && (!x || !codes || !scales))
    throw Error(ErrorKind::Argument, "quantizeFp8: x, codes and scales must not be null");
  const int64_t blockElements = int64_t(blockRows) * std::max<int64_t>(cols, 1);
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / blockElements);
  parallelFor(0, matrices * rowBlocks, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t index = lo; index < hi; ++index) {
      const int64_t matrix = index / rowBlocks, rb = index % rowBlocks;
      const int64_t r0 = rb * blockRows, r1 = std::min(rows, r0 + blockRows);
      const float* xm = x + matrix * rows * cols;
      uint8_t* cm = codes + matrix * rows * cols;
      for (int64_t cb = 0; cb < colBlocks; ++cb) {
        const int64_t c0 = cb * kFp8Block, c1 = std::min(cols, c0 + kFp8Block);
        float amax = 0.0f;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) amax = fp8AmaxMerge(amax, std::fabs(xm[r * cols + c]));
        const float scale = fp8BlockScale(amax, format);
        scales[index * colBlocks + cb] = scale;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) cm[r * cols + c] = fp8Quantize(xm[r * cols + c], scale, format);
      }
    }
  });
}

void quantizeActivations(const float* a, int64_t m, int64_t k, Fp8Format format, uint8_t* codes, float* scales) {
  quantizeFp8Blocks(a, 1, m, k, 1, format, codes, scales);
}

void quantizeWeights(const float* w, int64_t groups, int64_t n, int64_t k, Fp8Format format, uint8_t* codes,
                     float* scales) {
  quantizeFp8Blocks(w, groups, n, k, kFp8Block, format, codes, scales);
}

void groupedGemmFp8Reference(const uint8_t* a, Fp8Format aFormat, const float* aScales, const uint8_t* w,
                             Fp8Format wFormat, const float* wScales, const int32_t* groupRows, int groups,
                             int64_t m, int n, int k, float* out) {
  checkGroupedGemmFp8(a, aScales, w, wScales, groupRows, groups, m, n, k, out);
  const DecodeTable& aTable = decodeTable(aFormat);
  const DecodeTable& wTable = decodeTable(wFormat);
  const int64_t kBlocks = fp8BlockCount(k), nBlocks = fp8BlockCount(n);
  std::vector<GemmTask> tasks;
  int64_t row = 0;
  for (int g = 0; g < groups; ++g) {
    for (int64_t r = 0; r < groupRows[g]; r += kRowTile)
      tasks.push_back({g, row + r, std::min<int64_t>(kRowTile, groupRows[g] - r)});
    row += groupRows[g];
  }
  parallelFor(0, int64_t(tasks.size()), 1, [&](int64_t lo, int64_t hi) {
    std::vector<double> aPanel(size_t(kRowTile + kMr) * kFp8Block), wPanel(size_t(kFp8Block + kNr) * kFp8Block);
    std::vector<double> acc(size_t(kRowTile) * kFp8Block);
    for (int64_t t = lo; t < hi; ++t) {
      const GemmTask& task = tasks[size_t(t)];
      const uint8_t* wg = w + int64_t(task.group) * n * k;
      for (int64_t nb = 0; nb < nBlocks; ++nb) {
        const int64_t n0 = nb * kFp8Block, nLen = std::min<int64_t>(kFp8Block, n - n0);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t kb = 0; kb < kBlocks; ++kb) {
          const int64_t k0 = kb * kFp8Block;
          const int kLen = int(std::min<int64_t>(kFp8Block, k - k0));
          packPanel(a + task.row0 * k, k, task.rows, k0, kLen, kMr, aTable, aPanel.data());
          packPanel(wg + n0 * k, k, nLen, k0, kLen, kNr, wTable, wPanel.data());
          const double sb = wScales[(int64_t(task.group) * nBlocks + nb) * kBlocks + kb];
          for (int64_t i0 = 0; i0 < task.rows; i0 += kMr)
            for (int64_t j0 = 0; j0 < nLen; j0 += kNr) {
              double sum[kMr][kNr];
              blockProducts(aPanel.data() + i0 * kLen, wPanel.data() + j0 * kLen, kLen, sum);
              for (int64_t i = i0; i < std::min(task.rows, i0 + kMr); ++i) {
                const double scale = double(aScales[(task.row0 + i) * kBlocks + kb]) * sb;
                for (int64_t j = j0; j < std::min(nLen, j0 + kNr); ++j) acc[size_t(i * kFp8Block + j)] += sum[i - i0][j - j0] * scale;
              }
            }
        }
        for (int64_t i = 0; i < task.rows; ++i)
          for (int64_t j = 0; j < nLen; ++j) out[(task.row0 + i) * n + n0 + j] = float(acc[size_t(i * kFp8Block + j)]);
      }
    }
  });
}

}  // namespace moekit::cpu
