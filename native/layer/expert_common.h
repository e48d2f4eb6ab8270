// What every ExpertStage implementation shares: its argument checks (so the CPU and CUDA
// backends reject the same misuse with the same messages) and its FLOP count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "stage_types.h"

namespace moekit {

// The constructor's arguments; returns the number of experts over all groups.
inline int checkExpertGroups(int hidden, Activation act, const std::vector<ExpertGroup>& groups) {
  if (hidden < 1) throw Error(ErrorKind::Shape, "Experts: hidden must be >= 1, got " + std::to_string(hidden));
  if (groups.empty()) throw Error(ErrorKind::Argument, "Experts: groups must not be empty");
  int experts = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const ExpertGroup& grp = groups[g];
    const std::string name = "Experts: groups[" + std::to_string(g) + "].";
    if (grp.count < 1 || grp.ffn < 1)
      throw Error(ErrorKind::Shape, name + "count and .ffn must be >= 1, got count = " + std::to_string(grp.count) +
                                        ", ffn = " + std::to_string(grp.ffn));
    if (!grp.w1) throw Error(ErrorKind::Argument, name + "w1 must not be null");
    if (!grp.w2) throw Error(ErrorKind::Argument, name + "w2 must not be null");
    if (act == Activation::Swiglu && !grp.w3) throw Error(ErrorKind::Argument, name + "w3 must not be null for swiglu");
    experts += grp.count;
  }
  return experts;
}

// The precision mode: fp8 experts run with bf16 compute only (their backward is the bf16 one).
inline void checkExpertPrecision(Precision precision) {
  if (precision.experts == Precision::Experts::Fp8 && precision.compute != Precision::Compute::Bf16)
    throw Error(ErrorKind::Argument, "Experts: precision: expected compute bf16 with fp8 experts, got compute f32");
}

// forward's sizes and buffers (token and expert indices are checked by the permutation).
inline void checkExpertForward(const float* x, int T, int n, const float* weight, const float* y) {
  const std::string op = "Experts.forward: ";
  if (T < 0 || n < 0)
    throw Error(ErrorKind::Shape, op + "T and n must be >= 0, got T = " + std::to_string(T) + ", n = " + std::to_string(n));
  if (n > 0 && !weight) throw Error(ErrorKind::Argument, op + "weight must not be null");
  if (T > 0 && !x) throw Error(ErrorKind::Argument, op + "x must not be null");
  if (T > 0 && !y) throw Error(ErrorKind::Argument, op + "y must not be null");
}

// flops(e)'s argument.
inline void checkExpertIndex(int expert, int experts) {
  if (expert < 0 || expert >= experts)
    throw Error(ErrorKind::Argument, "Experts.flops: expert must be in [0, E = " + std::to_string(experts) + "), got " +
                                         std::to_string(expert));
}

// Forward FLOPs of an expert's matmuls over `rows` rows: 2·rows·H·F per matmul, three for swiglu
// (w1, w3, w2), two otherwise.
inline int64_t expertForwardFlops(int64_t rows, int hidden, int ffn, Activation act) {
  return 2 * rows * hidden * ffn * (act == Activation::Swiglu ? 3 : 2);
}

}  // namespace moekit
