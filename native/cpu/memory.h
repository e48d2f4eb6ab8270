// The CPU backend's DeviceMemory (layer/stages.h): host memory, so every primitive is a plain loop
// or copy.
#pragma once

#include "../layer/stages.h"

namespace moekit::cpu {

class Memory final : public DeviceMemory {
 public:
  bool isHost() const override { return true; }
  void zero(float* p, size_t n) const override;
  int firstNonFiniteRow(const float* a, int rows, int cols) const override;
  void copy(void* to, const void* from, size_t bytes) const override;
  void toHost(void* host, const void* device, size_t bytes) const override;
  void fromHost(void* device, const void* host, size_t bytes) const override;
  std::shared_ptr<void> allocate(size_t bytes) const override;
};

}  // namespace moekit::cpu
