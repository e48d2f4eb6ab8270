#include "devices.h"

#include <cuda_runtime.h>

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

}  // namespace moekit::cuda
