// Data and reference of the tensor-core wrapper tests (tensor_core_test.cu, wgmma_test.cu): small
// integers, whose products and sums are exact in fp32 and in double, so a wrapper's result is
// compared bit for bit whatever its order of accumulation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace emutest {

// n small integers in [-range, range], deterministic in seed.
inline std::vector<float> smallIntegers(size_t n, int range, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = float(int((s >> 8) % uint32_t(2 * range + 1)) - range);
  }
  return v;
}

// D [m,n] = A [m,k] · B [k,n] + C, in double (exact for these data).
inline std::vector<float> referenceProduct(const std::vector<float>& A, const std::vector<float>& B,
                                           const std::vector<float>& C, int m, int n, int k) {
  std::vector<float> D(size_t(m) * size_t(n));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double sum = C[size_t(i) * size_t(n) + size_t(j)];
      for (int q = 0; q < k; ++q) sum += double(A[size_t(i) * size_t(k) + size_t(q)]) * B[size_t(q) * size_t(n) + size_t(j)];
      D[size_t(i) * size_t(n) + size_t(j)] = float(sum);
    }
  return D;
}

// How many elements differ in their bits.
inline int countMismatches(const std::vector<float>& got, const std::vector<float>& expected) {
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += std::memcmp(&got[i], &expected[i], sizeof(float)) != 0;
  return bad;
}

}  // namespace emutest
