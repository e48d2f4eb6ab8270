#include "staged_ops.h"

#include <algorithm>

#include "adamw.h"
#include "cuda_check.h"
#include "grouped_gemm_fp8.h"
#include "quantize_fp8.h"
#include "staging.h"
#include "stream_buffer.h"

namespace moekit::cuda {

void adamwStepStaged(float* param, const float* grad, float* m, float* v, int64_t count,
                     const cpu::AdamWConfig& config, int64_t step) {
  if (!cpu::checkAdamWStep(param, grad, m, v, count, config, step)) return;
  StagingStream stream("adamwStep");
  stream.open();
  const size_t bytes = size_t(count) * sizeof(float);
  const StreamBuffer<float> dParam(size_t(count), stream.get(), "param"), dGrad(size_t(count), stream.get(), "grad"),
      dM(size_t(count), stream.get(), "m"), dV(size_t(count), stream.get(), "v");
  float* buffers[4] = {dParam.get(), dGrad.get(), dM.get(), dV.get()};
  const float* hosts[4] = {param, grad, m, v};
  const char* names[4] = {"param", "grad", "m", "v"};
  for (int i = 0; i < 4; ++i) stream.upload(buffers[i], hosts[i], bytes, names[i]);
  adamwStep(buffers[0], buffers[1], buffers[2], buffers[3], count, config, step, stream.get());
  stream.download(param, buffers[0], bytes, "param");
  stream.download(m, buffers[2], bytes, "m");
  stream.download(v, buffers[3], bytes, "v");
  stream.synchronize("cudaStreamSynchronize");
}

void groupedGemmFp8Staged(const uint8_t* a, const float* aScales, const uint8_t* b, const float* bScales,
                          const std::vector<int32_t>& groupSizes, int n, int k, float* out) {
  const int G = int(groupSizes.size());
  const int kPad = (k + 15) / 16 * 16, kBlocks = int(fp8BlockCount(k)), nBlocks = int(fp8BlockCount(n));
  std::vector<Fp8GemmGroup> groups(static_cast<size_t>(G));
  for (int g = 0; g < G; ++g) groups[size_t(g)] = Fp8GemmGroup{groupSizes[size_t(g)], n, kPad, nullptr, nullptr};
  const std::vector<int64_t> start = fp8GemmRowStarts(groups);
  const int64_t mPad = start.back();
  if (mPad == 0 || n == 0) return;
  // The kernel's layout, zero-padded: a and b to kPad columns, a's rows per group to the row tile.
  std::vector<uint8_t> aPad(size_t(mPad) * kPad, 0), bPad(size_t(G) * n * kPad, 0);
  std::vector<float> aScalesPad(size_t(mPad) * kBlocks, 0.0f);
  int64_t row = 0;
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < groupSizes[size_t(g)]; ++r, ++row) {
      std::copy_n(a + row * k, k, &aPad[size_t(start[size_t(g)] + r) * kPad]);
      std::copy_n(aScales + row * kBlocks, kBlocks, &aScalesPad[size_t(start[size_t(g)] + r) * kBlocks]);
    }
  for (int64_t r = 0; r < int64_t(G) * n; ++r) std::copy_n(b + r * k, k, &bPad[size_t(r) * kPad]);
  StagingStream stream("groupedGemmFp8");
  stream.open();
  const size_t bScaleCount = size_t(G) * nBlocks * kBlocks;
  const StreamBuffer<uint8_t> dA(aPad.size(), stream.get(), "a"), dB(bPad.size(), stream.get(), "b");
  const StreamBuffer<float> dAScales(aScalesPad.size(), stream.get(), "aScales"), dBScales(bScaleCount, stream.get(), "bScales"),
      dOut(size_t(mPad) * n, stream.get(), "out");
  stream.upload(dA.get(), aPad.data(), aPad.size(), "a");
  stream.upload(dAScales.get(), aScalesPad.data(), aScalesPad.size() * sizeof(float), "aScales");
  stream.upload(dB.get(), bPad.data(), bPad.size(), "b");
  stream.upload(dBScales.get(), bScales, bScaleCount * sizeof(float), "bScales");
  for (int g = 0; g < G; ++g) {
    groups[size_t(g)].w = dB.get() + size_t(g) * n * kPad;
    groups[size_t(g)].wScales = dBScales.get() + size_t(g) * nBlocks * kBlocks;
  }
  groupedGemmFp8(dA.get(), kPad, dAScales.get(), kBlocks, groups, dOut.get(), n, stream.get());
  std::vector<float> outPad(size_t(mPad) * n);
  stream.download(outPad.data(), dOut.get(), outPad.size() * sizeof(float), "out");
  stream.synchronize("cudaStreamSynchronize");
  row = 0;
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < groupSizes[size_t(g)]; ++r, ++row)
      std::copy_n(&outPad[size_t(start[size_t(g)] + r) * n], n, out + row * n);
}

void quantizeFp8Staged(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                       Fp8Format format, uint8_t* codes, float* scales) {
  const int64_t count = matrices * rows * cols;
  if (count == 0) return;
  StagingStream stream("quantizeFp8");
  stream.open();
  const int64_t scaleCount = matrices * fp8BlockCount(rows, blockRows) * fp8BlockCount(cols);
  const StreamBuffer<float> dX(size_t(count), stream.get(), "x"), dScales(size_t(scaleCount), stream.get(), "scales");
  const StreamBuffer<uint8_t> dCodes(size_t(count), stream.get(), "codes");
  stream.upload(dX.get(), x, size_t(count) * sizeof(float), "x");
  quantizeFp8Blocks(dX.get(), matrices, rows, cols, blockRows, format, dCodes.get(), dScales.get(), stream.get());
  stream.download(codes, dCodes.get(), size_t(count), "codes");
  stream.download(scales, dScales.get(), size_t(scaleCount) * sizeof(float), "scales");
  stream.synchronize("cudaStreamSynchronize");
}

}  // namespace moekit::cuda
