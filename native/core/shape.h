// Shape arithmetic shared by every backend: element counts with overflow checks against the
// largest tensor moekit accepts.
#pragma once

#include <cstdint>

namespace moekit {

// Kernels index elements with 32-bit signed integers, so a tensor holds at most 2³¹ − 1 elements.
constexpr int64_t kMaxElements = 2147483647;
constexpr int kMaxRank = 8;

// numel of a shape; −1 when a dimension is negative or the product exceeds kMaxElements.
inline int64_t checkedNumel(const int64_t* dims, int rank) {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) {
    if (dims[i] < 0 || dims[i] > kMaxElements) return -1;
    n *= dims[i];
    if (n > kMaxElements) return -1;
  }
  return n;
}

}  // namespace moekit
