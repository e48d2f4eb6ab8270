// AdamW over a flat f32 device buffer: the update of cpu::adamwStep (torch.optim.AdamW's order,
// core/adamw.h), one thread per element. Kernel and mapping in adamw.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../cpu/adamw.h"

namespace moekit::cuda {

// param, grad, m, v: DEVICE [count]; param, m, v updated in place; enqueued on `stream`. Checks
// like cpu::adamwStep, with its messages: the config and step with cpu::checkAdamW
// (Error(Argument)), count >= 0 (Error(Shape)), non-null buffers when count > 0 (Error(Argument)).
// A failed launch throws Error(Device). The same bits as cpu::adamwStep on the SIMT emulator; on a
// device, FMA contraction may change the last bit.
void adamwStep(float* param, const float* grad, float* m, float* v, int64_t count,
               const cpu::AdamWConfig& config, int64_t step, cudaStream_t stream);

}  // namespace moekit::cuda
