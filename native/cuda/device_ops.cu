#include "device_ops.h"

#include <climits>
#include <string>

#include "adamw.h"
#include "cuda_check.h"
#include "grouped_gemm_fp8.h"
#include "padded_rows.h"
#include "quantize_fp8.h"
#include "runtime_calls.h"
#include "staging.h"
#include "stream_buffer.h"

namespace moekit::cuda {

void adamwStepOnDevice(float* param, const float* grad, float* m, float* v, int64_t count,
                       const cpu::AdamWConfig& config, int64_t step) {
  adamwStep(param, grad, m, v, count, config, step, deviceStream("adamwStep"));
}

void groupedGemmFp8OnDevice(const uint8_t* a, const float* aScales, const uint8_t* b, const float* bScales,
                            const std::vector<int32_t>& groupSizes, int n, int k, float* out) {
  const char* api = "groupedGemmFp8";
  const int G = int(groupSizes.size());
  const int kPad = (k + 15) / 16 * 16, kBlocks = int(fp8BlockCount(k)), nBlocks = int(fp8BlockCount(n));
  std::vector<Fp8GemmGroup> groups(static_cast<size_t>(G));
  for (int g = 0; g < G; ++g) groups[size_t(g)] = Fp8GemmGroup{groupSizes[size_t(g)], n, kPad, nullptr, nullptr};
  const std::vector<int64_t> paddedStart64 = fp8GemmRowStarts(groups);
  const int64_t mPad = paddedStart64.back();
  if (mPad == 0) return;
  if (mPad > INT_MAX) throw Error(ErrorKind::Shape, std::string(api) + ": " + std::to_string(mPad) + " padded rows exceed 2^31 - 1");
  // The row tables: compact start and padded start of each group [G+1], the small upload; the map
  // of every compact row to its padded row is built from them on the device.
  std::vector<int32_t> starts(size_t(2 * (G + 1)), 0);
  for (int g = 0; g < G; ++g) starts[size_t(g + 1)] = starts[size_t(g)] + groupSizes[size_t(g)];
  for (int g = 0; g <= G; ++g) starts[size_t(G + 1 + g)] = int32_t(paddedStart64[size_t(g)]);
  const int m = starts[size_t(G)];
  const cudaStream_t stream = deviceStream(api);
  const StreamBuffer<int32_t> dStarts(starts.size(), stream, "the group row starts"), rowMap(size_t(m), stream, "the row map");
  checkCuda(copyAsync(dStarts.get(), starts.data(), starts.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream),
            std::string(api) + ": cudaMemcpyAsync of the group row starts");
  paddedRowMap(dStarts.get(), dStarts.get() + G + 1, G, m, rowMap.get(), stream);
  // a and its scales into the padded rows (K zero-padded to kPad); b's K padded when it needs it.
  const StreamBuffer<uint8_t> aPad(size_t(mPad) * kPad, stream, "a (padded)");
  const StreamBuffer<float> aScalesPad(size_t(mPad) * kBlocks, stream, "a.scales (padded)"),
      outPad(size_t(mPad) * n, stream, "out (padded)");
  packRows(a, m, k, rowMap.get(), aPad.get(), kPad, stream);
  packRows(aScales, m, kBlocks, rowMap.get(), aScalesPad.get(), kBlocks, stream);
  const StreamBuffer<uint8_t> bPad(kPad == k ? 0 : size_t(G) * n * kPad, stream, "b (padded)");
  if (kPad != k) packRows(b, int64_t(G) * n, k, nullptr, bPad.get(), kPad, stream);
  const uint8_t* bLaid = kPad == k ? b : bPad.get();
  for (int g = 0; g < G; ++g) {
    groups[size_t(g)].w = bLaid + size_t(g) * n * kPad;
    groups[size_t(g)].wScales = bScales + size_t(g) * nBlocks * kBlocks;
  }
  groupedGemmFp8(aPad.get(), kPad, aScalesPad.get(), kBlocks, groups, outPad.get(), n, stream);
  unpackRows(outPad.get(), n, rowMap.get(), m, n, out, stream);
}

void quantizeFp8OnDevice(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                         Fp8Format format, uint8_t* codes, float* scales) {
  if (matrices * rows * cols == 0) return;
  quantizeFp8Blocks(x, matrices, rows, cols, blockRows, format, codes, scales, deviceStream("quantizeFp8"));
}

}  // namespace moekit::cuda
