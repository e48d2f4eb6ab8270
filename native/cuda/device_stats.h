// What cuda.stats() reports for a device (DESIGN §2b): counted by DeviceCounters
// (device_counters.h) where moekit calls the CUDA runtime. Plain C++: the addon reads it through
// devices.h without including the CUDA runtime.
#pragma once

#include <cstdint>

namespace moekit::cuda {

struct DeviceStats {
  int64_t hostToDeviceBytes = 0;
  int64_t deviceToHostBytes = 0;
  int64_t synchronizations = 0;  // the host waited for the device
  int64_t allocations = 0;       // cudaMallocAsync calls that grew the device's memory pool
  int64_t launches = 0;
  int64_t liveBytes = 0;         // bytes in use: taken from the pool and not returned to it (not reset)
  int64_t peakBytes = 0;         // the most liveBytes held since the last reset
  int64_t reservedBytes = 0;     // what the pool reserves: liveBytes + its idle blocks (not reset)
};

}  // namespace moekit::cuda
