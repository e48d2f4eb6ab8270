// cuda::adamwStep (adamw.h). The step's scalars (1 − lr·wd, β1, β2, lr/(1 − β1ᵗ), 1/√(1 − β2ᵗ), eps)
// are derived on the host in float64 and rounded to f32 (adamw::adamwScalars), then
//   adamwKernel   grid-stride loop, one element per thread per iteration (coalesced f32 loads and
//                 stores of param, grad, m, v): adamw::adamwUpdate, the CPU's per-element code.
#include "adamw.h"

#include <algorithm>
#include <string>

#include "../core/adamw.h"
#include "../core/errors.h"
#include "cuda_check.h"
#include "emu/launch.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

__global__ void __launch_bounds__(kThreads)
    adamwKernel(adamw::Scalars s, float* param, const float* grad, float* m, float* v,
                int64_t count) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
    adamw::adamwUpdate(s, grad[i], param[i], m[i], v[i]);
}

}  // namespace

void adamwStep(float* param, const float* grad, float* m, float* v, int64_t count,
               const cpu::AdamWConfig& c, int64_t step, cudaStream_t stream) {
  if (!cpu::checkAdamWStep(param, grad, m, v, count, c, step)) return;
  const adamw::Scalars s = adamw::adamwScalars(c.lr, c.beta1, c.beta2, c.eps, c.weightDecay, step);
  const int64_t blocks = std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks);
  checkCuda(launch<adamwKernel>(dim3(unsigned(blocks)), dim3(kThreads), 0, stream, s, param, grad, m,
                                v, count),
            "launch of adamwKernel");
}

}  // namespace moekit::cuda
