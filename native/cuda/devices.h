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

}  // namespace moekit::cuda
