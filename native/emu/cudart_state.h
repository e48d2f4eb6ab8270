// State shared between the emulated CUDA runtime (cudart.cc) and the grid launcher (grid.cc).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace moekit::emu {

// Records err as the calling host thread's last error (what cudaGetLastError returns) and returns it.
cudaError_t recordError(cudaError_t err);

// Dynamic shared memory a launch of `kernel` may request: 48 KiB unless raised with
// cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize), as on hardware.
size_t maxDynamicSharedBytes(const void* kernel);

// The emulated device's opt-in shared memory limit per block and compute capability (MOEKIT_EMU_SM,
// default 89: sm_89 has the fp8 mma.sync; 90 makes the fp8 GEMM take its wgmma kernel), read once
// per process, unless setComputeCapability set one: that may change between launches (lib/native.ts
// sets it for each jest test file, so the two emulated projects may share a worker process).
size_t sharedMemoryOptin();
int computeCapability();

// The emulated devices: MOEKIT_EMU_DEVICES (1 to 8, default 1), read once per process. Every
// device has the same properties; each host thread has its current device (cudaSetDevice, 0 at
// first), and each stream the device that was current when it was created.
int emulatedDeviceCount();
int currentDevice();
int streamDevice(cudaStream_t stream);  // the current device for the default (null) stream

}  // namespace moekit::emu
