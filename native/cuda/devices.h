// CUDA devices visible to this process. A machine without a driver or a GPU has none; that is
// not an error (DESIGN §5: cuda is then simply absent from devices()).
#pragma once

#include <string>
#include <vector>

#include "device_stats.h"

namespace moekit::cuda {

struct DeviceInfo {
  int index;
  std::string name;
  int computeCapability;  // major·10 + minor
  size_t totalMemory;
};

std::vector<DeviceInfo> listDevices();

// Makes device `index` current for the calling thread (the stages created next allocate there).
// Throws Error(Device) naming the index when it is not one of listDevices().
void selectDevice(int index);

// cuda.stats / cuda.resetStats / cuda.synchronize of device `index` (DeviceCounters in
// device_counters.h); each selects the device first (selectDevice's errors).
DeviceStats readDeviceStats(int index);
void resetDeviceStats(int index);
void synchronizeDevice(int index);

#if defined(MOEKIT_EMU) || (defined(MOEKIT_EMULATED) && MOEKIT_EMULATED)
// The emulated build only: the emulated device reports compute capability `cc` (80, 86, 89 or 90)
// from now on, or follows MOEKIT_EMU_SM again when `cc` is 0 (lib/native.ts calls it with the
// MOEKIT_EMU_SM of the JavaScript environment, which a jest sandbox does not pass to getenv).
// Throws Error(Argument) for another value.
void setEmulatedComputeCapability(int cc);
#endif

}  // namespace moekit::cuda
