// Host side shared by the tensor-core grouped GEMM test programs (grouped_gemm_bf16_test.cc,
// grouped_gemm_bf16_backward_test.cc, grouped_gemm_fp8_test.cc): a group's shape, the kernels'
// group descriptors built from shapes alone, the bf16 operand values of the bf16 tests, and the
// check that a call throws the expected moekit::Error.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/minifloat.h"
#include "harness.h"

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

// call() must throw moekit::Error of `kind` whose message contains every one of `parts`.
inline void expectError(ErrorKind kind, const std::vector<std::string>& parts, const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    EMU_EXPECT(e.kind() == kind, std::string("error kind of: ") + e.what());
    emutest::expectContains(e.what(), parts);
    return;
  }
  throw emutest::Failure("expected moekit::Error with " + parts.front());
}

}  // namespace moekit::test
