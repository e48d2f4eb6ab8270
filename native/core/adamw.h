// One AdamW step on one f32 element, in the order of torch.optim.AdamW, shared by the CPU
// optimiser (native/cpu/adamw.cc) and the CUDA kernel (native/cuda/adamw.cu):
//   p ← p · (1 − lr·weightDecay)
//   m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)
// The step's scalars are derived once in float64 and rounded to f32 (adamwScalars); the element
// update is f32 arithmetic. sqrtf is correctly rounded on the host and on a device; a device
// compiler may still contract a·b + c into an FMA, so on real hardware results may differ from the
// CPU's in the last bit (on the SIMT emulator they are equal).
#pragma once

#include <cmath>
#include <cstdint>

#include "hd.h"

namespace moekit::adamw {

struct Scalars {
  float decay;       // 1 − lr·weightDecay
  float beta1, beta2;
  float stepSize;    // lr / (1 − β1ᵗ)
  float invSqrtBc2;  // 1 / √(1 − β2ᵗ)
  float eps;
};

// The scalars of step t ≥ 1 (1-based) for valid settings (cpu::checkAdamW).
inline Scalars adamwScalars(double lr, double beta1, double beta2, double eps, double weightDecay,
                            int64_t step) {
  const double t = double(step);
  Scalars s;
  s.decay = float(1.0 - lr * weightDecay);
  s.beta1 = float(beta1);
  s.beta2 = float(beta2);
  s.stepSize = float(lr / (1.0 - std::pow(beta1, t)));
  s.invSqrtBc2 = float(1.0 / std::sqrt(1.0 - std::pow(beta2, t)));
  s.eps = float(eps);
  return s;
}

// One element: param, m, v updated in place from the gradient g.
MOEKIT_HD inline void adamwUpdate(const Scalars& s, float g, float& param, float& m, float& v) {
  m = s.beta1 * m + (1.0f - s.beta1) * g;
  v = s.beta2 * v + (1.0f - s.beta2) * g * g;
  param = param * s.decay - s.stepSize * m / (std::sqrt(v) * s.invSqrtBc2 + s.eps);
}

}  // namespace moekit::adamw
