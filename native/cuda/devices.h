// CUDA devices visible to this process. A machine without a driver or a GPU has none; that is
// not an error (DESIGN §5: cuda is then simply absent from devices()).
#pragma once

#include <string>
#include <vector>

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

}  // namespace moekit::cuda
