#include "devices.h"

#include <cuda_runtime.h>

#include <string>

#include "../core/errors.h"
#include "cuda_check.h"

namespace moekit::cuda {

std::vector<DeviceInfo> listDevices() {
  std::vector<DeviceInfo> devices;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky error and report none
    return devices;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    devices.push_back(DeviceInfo{i, prop.name, prop.major * 10 + prop.minor, prop.totalGlobalMem});
  }
  return devices;
}

#if defined(MOEKIT_EMU)
void setEmulatedComputeCapability(int cc) {
  if (cc != 0 && cc != 80 && cc != 86 && cc != 89 && cc != 90) {
    throw Error(ErrorKind::Argument, "setEmulatedComputeCapability: cc: expected 80, 86, 89, 90 or 0 (MOEKIT_EMU_SM), got " +
                                         std::to_string(cc));
  }
  emu::setComputeCapability(cc);
}
#endif

void selectDevice(int index) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    count = 0;
  }
  if (index < 0 || index >= count)
    throw Error(ErrorKind::Device, "device: cuda:" + std::to_string(index) + " is not available (" +
                                       std::to_string(count) + " CUDA devices)");
  checkCuda(cudaSetDevice(index), "cudaSetDevice(" + std::to_string(index) + ")");
}

DeviceStats readDeviceStats(int index) {
  selectDevice(index);
  return DeviceCounters::instance().read(index);
}

void resetDeviceStats(int index) {
  selectDevice(index);
  DeviceCounters::instance().reset(index);
}

void synchronizeDevice(int index) {
  selectDevice(index);
  checkCuda(deviceSynchronize(), "cuda.synchronize: cudaDeviceSynchronize");
}

}  // namespace moekit::cuda
