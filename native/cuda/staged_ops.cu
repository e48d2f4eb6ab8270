#include "staged_ops.h"

#include "adamw.h"
#include "quantize_fp8.h"
#include "cuda_check.h"
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
