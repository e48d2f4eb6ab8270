// AdamW (Loshchilov & Hutter, decoupled weight decay) over a flat f32 buffer, in the order of
// torch.optim.AdamW so results match PyTorch step for step:
//   p ← p · (1 − lr·weightDecay)
//   m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)
// t is the 1-based step count; m and v start at zero and are updated in place.
#pragma once

#include <cstdint>

namespace moekit::cpu {

struct AdamWConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01;
};

// Throws Error(Argument) naming the offending setting: lr, weightDecay >= 0; beta1, beta2 in
// [0, 1); eps > 0; step >= 1.
void checkAdamW(const AdamWConfig& config, int64_t step);

// checkAdamW, then the buffers: count >= 0 (Error(Shape)), none null when count > 0
// (Error(Argument)). Returns whether there is anything to update (count > 0). Shared by the CPU
// and CUDA steps, so both reject the same calls with the same messages.
bool checkAdamWStep(const float* param, const float* grad, const float* m, const float* v,
                    int64_t count, const AdamWConfig& config, int64_t step);

// param, grad, m, v [count]; param, m, v updated in place.
void adamwStep(float* param, const float* grad, float* m, float* v, int64_t count,
               const AdamWConfig& config, int64_t step);

}  // namespace moekit::cpu
