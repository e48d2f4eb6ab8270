// The expert activations of DESIGN §3 X1, one element at a time, shared by the CPU backend
// (native/cpu/experts.cc) and the CUDA kernels (native/cuda/grouped_gemm.cu) so both evaluate the
// same expressions in the same order:
//
//   swiglu  h = silu(a1)·a3 = a1·σ(a1)·a3   ∂h/∂a1 = a3·σ(a1)·(1 + a1·(1 − σ(a1))), ∂h/∂a3 = a1·σ(a1)
//   gelu    h = 0.5·a·(1 + erf(a/√2))        ∂h/∂a = Φ(a) + a·φ(a)   (exact erf form, not tanh)
//   relu    h = max(a, 0)                    ∂h/∂a = [a > 0]         (relu'(0) = 0)
//
// Everything is fp32. expf/erff are the C library's on the host (and in the SIMT emulator, so an
// emulated kernel and the CPU backend agree bitwise) and CUDA's (≤ 2 ulp) on a device.
#pragma once

#include <math.h>

#include "hd.h"

namespace moekit::activation {

constexpr float kInvSqrt2 = 0.70710678118654752f;    // 1/√2
constexpr float kInvSqrt2Pi = 0.39894228040143268f;  // 1/√(2π)

MOEKIT_HD inline float sigmoid(float a) { return 1.0f / (1.0f + expf(-a)); }

MOEKIT_HD inline float swiglu(float a1, float a3) { return a1 * sigmoid(a1) * a3; }
// dh → (da1, da3).
MOEKIT_HD inline void swigluBackward(float a1, float a3, float dh, float& da1, float& da3) {
  const float s = sigmoid(a1);
  da1 = dh * a3 * s * (1.0f + a1 * (1.0f - s));
  da3 = dh * a1 * s;
}

MOEKIT_HD inline float gelu(float a) { return 0.5f * a * (1.0f + erff(a * kInvSqrt2)); }
MOEKIT_HD inline float geluGrad(float a) {
  return 0.5f * (1.0f + erff(a * kInvSqrt2)) + a * kInvSqrt2Pi * expf(-0.5f * a * a);
}

MOEKIT_HD inline float relu(float a) { return a > 0.0f ? a : 0.0f; }
// dh → da for relu.
MOEKIT_HD inline float reluBackward(float a, float dh) { return a > 0.0f ? dh : 0.0f; }

}  // namespace moekit::activation
