// Host side shared by the tensor-core grouped GEMM test programs (grouped_gemm_bf16_test.cc,
// grouped_gemm_bf16_backward_test.cc, grouped_gemm_fp8_test.cc): a group's shape, the kernels'
// group descriptors built from shapes alone, and the bf16 operand values of the bf16 tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "core/minifloat.h"

namespace moekit::test {

struct GroupShape {
  int rows, n, k;
};

// Bf16GemmGroup / Fp8GemmGroup descriptors with each shape's rows, n and k and no weights yet.
template <class Group>
std::vector<Group> groupsOfShapes(const std::vector<GroupShape>& shapes) {
  std::vector<Group> groups;
  for (const GroupShape& s : shapes) {
    Group g;
    g.rows = s.rows;
    g.n = s.n;
    g.k = s.k;
    groups.push_back(g);
  }
  return groups;
}

// bf16 bits of one test value: an integer in [-4, 4] when `integers` (every sum of their products
// is exact in fp32), otherwise uniform in [-1, 1] rounded to bf16.
inline uint16_t bf16TestValue(std::mt19937& rng, bool integers) {
  if (integers) return encodeBF16(float(int(rng() % 9) - 4));
  return encodeBF16(std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng));
}

}  // namespace moekit::test
