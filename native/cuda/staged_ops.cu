#include "staged_ops.h"

#include <cuda_runtime.h>

#include <string>

#include "adamw.h"
#include "cuda_check.h"

namespace moekit::cuda {

void adamwStepStaged(float* param, const float* grad, float* m, float* v, int64_t count,
                     const cpu::AdamWConfig& config, int64_t step) {
  if (!cpu::checkAdamWStep(param, grad, m, v, count, config, step)) return;
  cudaStream_t stream = nullptr;
  checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "adamwStep: cudaStreamCreateWithFlags");
  struct Destroy {
    cudaStream_t s;
    ~Destroy() { cudaStreamDestroy(s); }
  } destroy{stream};
  const size_t bytes = size_t(count) * sizeof(float);
  DeviceBuffer<float> dParam, dGrad, dM, dV;
  float* buffers[4] = {dParam.reserve(size_t(count), "param"), dGrad.reserve(size_t(count), "grad"),
                       dM.reserve(size_t(count), "m"), dV.reserve(size_t(count), "v")};
  const float* hosts[4] = {param, grad, m, v};
  for (int i = 0; i < 4; ++i)
    checkCuda(cudaMemcpyAsync(buffers[i], hosts[i], bytes, cudaMemcpyHostToDevice, stream),
              "adamwStep: cudaMemcpyAsync to the device");
  adamwStep(buffers[0], buffers[1], buffers[2], buffers[3], count, config, step, stream);
  float* outs[3] = {param, m, v};
  const float* from[3] = {buffers[0], buffers[2], buffers[3]};
  for (int i = 0; i < 3; ++i)
    checkCuda(cudaMemcpyAsync(outs[i], from[i], bytes, cudaMemcpyDeviceToHost, stream),
              "adamwStep: cudaMemcpyAsync to the host");
  checkCuda(cudaStreamSynchronize(stream), "adamwStep: cudaStreamSynchronize");
}

}  // namespace moekit::cuda
