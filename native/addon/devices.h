// devices(): the compute devices this binary can use (DESIGN §2, §5).
#pragma once

#include <napi.h>

namespace moekit::addon {

Napi::Value devices(const Napi::CallbackInfo& info);
// buildInfo(): what this binary was compiled with (CUDA or not, architectures, emulation).
Napi::Value buildInfo(const Napi::CallbackInfo& info);
// cudaStats('cuda:N') → {hostToDeviceBytes, deviceToHostBytes, synchronizations, allocations,
// launches, liveBytes, peakBytes} of that device since cudaResetStats (cuda/device_stats.h);
// cudaSynchronize('cuda:N') waits for the device. DeviceError without a CUDA backend.
Napi::Value cudaStats(const Napi::CallbackInfo& info);
Napi::Value cudaResetStats(const Napi::CallbackInfo& info);
Napi::Value cudaSynchronize(const Napi::CallbackInfo& info);
#if MOEKIT_EMULATED
// setEmulatedComputeCapability(cc): the emulated build only (cuda::setEmulatedComputeCapability).
Napi::Value setEmulatedComputeCapability(const Napi::CallbackInfo& info);
#endif

}  // namespace moekit::addon
