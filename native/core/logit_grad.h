// Backward of the router logits (R1, R8) for one (token t, expert e), shared by the CPU router's
// backward (native/cpu/router.cc) and the CUDA one (native/cuda/router_backward.cu):
//   ∂l_te/∂x_t = α·W_e − βx·x_t,   ∂l_te/∂W_e = α·x_t − βw·W_e
//   R1 l = x·W_eᵀ:            α = 1,               βx = βw = 0
//   R8 l = cos(x, W_e)/τ:     α = 1/(τ‖x‖‖W_e‖),   βx = cos/(τ‖x‖²),   βw = cos/(τ‖W_e‖²)
// from ∂cos/∂x = W_e/(‖x‖‖W_e‖) − cos·x/‖x‖² and ∂cos/∂W_e = x/(‖x‖‖W_e‖) − cos·W_e/‖W_e‖².
// A zero row (‖x‖ = 0 or ‖W_e‖ = 0, cosine 0 in the forward) has all three 0.
#pragma once

#include "hd.h"

namespace moekit::routing {

struct LogitPartials {
  double alpha, betaX, betaW;
};

MOEKIT_HD inline LogitPartials logitPartials(bool affinity, double xNorm, double wNorm, double cos,
                                             double temperature) {
  if (!affinity) return {1.0, 0.0, 0.0};
  if (!(xNorm > 0 && wNorm > 0)) return {0.0, 0.0, 0.0};
  return {1.0 / (temperature * xNorm * wNorm), cos / (temperature * xNorm * xNorm),
          cos / (temperature * wNorm * wNorm)};
}

}  // namespace moekit::routing
