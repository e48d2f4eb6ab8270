// The CUDA backend's DeviceMemory (layer/stages.h) on the current device, ordered on its stream
// (staging.h deviceStream): zero with cudaMemsetAsync, copies counted by cuda.stats
// (runtime_calls.h), scratch from the device's memory pool. firstNonFiniteRow runs
// nonFiniteRowKernel (memory.cu) and reads one int back — a synchronisation.
#pragma once

#include "../layer/stages.h"

namespace moekit::cuda {

class Memory final : public DeviceMemory {
 public:
  bool isHost() const override { return false; }
  void zero(float* p, size_t n) const override;
  int firstNonFiniteRow(const float* a, int rows, int cols) const override;
  void copy(void* to, const void* from, size_t bytes) const override;
  void toHost(void* host, const void* device, size_t bytes) const override;
  void fromHost(void* device, const void* host, size_t bytes) const override;
  std::shared_ptr<void> allocate(size_t bytes) const override;
};

}  // namespace moekit::cuda
