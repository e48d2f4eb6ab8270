#include "device_arg.h"

#include <string>

#include "../core/errors.h"
#include "args.h"
#if MOEKIT_HAVE_CUDA
#include "../cuda/devices.h"
#endif

namespace moekit::addon {

DeviceArg readDevice(const Napi::Value& value, const char* name) {
  const std::string device = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (device == "cpu") return DeviceArg{};
  const bool digits = device.size() > 5 && device.size() < 12 &&
                      device.find_first_not_of("0123456789", 5) == std::string::npos;
  if (device.rfind("cuda:", 0) != 0 || !digits)
    throw Error(ErrorKind::Device, std::string(name) + " must be 'cpu' or 'cuda:N', got " + describe(value));
#if MOEKIT_HAVE_CUDA
  const int index = std::stoi(device.substr(5));
  cuda::selectDevice(index);
  return DeviceArg{true, index};
#else
  throw Error(ErrorKind::Device, std::string(name) + " is " + device +
                                     ", which needs the CUDA backend; this build has none");
#endif
}

std::string deviceName(int device) { return device < 0 ? std::string("cpu") : "cuda:" + std::to_string(device); }

}  // namespace moekit::addon
