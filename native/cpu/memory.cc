#include "memory.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

namespace moekit::cpu {

void Memory::zero(float* p, size_t n) const { std::fill(p, p + n, 0.0f); }

int Memory::firstNonFiniteRow(const float* a, int rows, int cols) const {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      if (!std::isfinite(a[size_t(r) * cols + c])) return r;
  return -1;
}

void Memory::copy(void* to, const void* from, size_t bytes) const {
  if (bytes > 0) std::memcpy(to, from, bytes);
}

void Memory::toHost(void* host, const void* device, size_t bytes) const {
  if (bytes > 0) std::memcpy(host, device, bytes);
}

void Memory::fromHost(void* device, const void* host, size_t bytes) const {
  if (bytes > 0) std::memcpy(device, host, bytes);
}

std::shared_ptr<void> Memory::allocate(size_t bytes) const {
  void* p = std::malloc(bytes > 0 ? bytes : 1);
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<void>(p, std::free);
}

}  // namespace moekit::cpu
