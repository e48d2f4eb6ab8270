// A device argument from JS ('cpu' or 'cuda:N', as lib/devices.ts deviceName writes it), shared by
// the bindings that run on either backend (layer.cc, ops.cc adamwStep).
#pragma once

#include <napi.h>

#include <string>

namespace moekit::addon {

struct DeviceArg {
  bool cuda = false;
  int index = 0;
};

// Throws Error(Device) naming `name` on anything else, and on 'cuda:N' when this build has no
// CUDA backend. For cuda, device N is made current (the stages created next allocate there).
DeviceArg readDevice(const Napi::Value& value, const char* name);

// "cpu" or "cuda:N" for a device index as NativeTensor::device() gives it (−1 = cpu).
std::string deviceName(int device);

}  // namespace moekit::addon
