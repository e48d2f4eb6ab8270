#include "devices.h"

#include "comm.h"
#include "device_arg.h"
#include "errors.h"

#if MOEKIT_HAVE_CUDA
#include "../cuda/devices.h"
#endif

namespace moekit::addon {

Napi::Value devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array list = Napi::Array::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("kind", "cpu");
  list.Set(uint32_t(0), cpu);
#if MOEKIT_HAVE_CUDA
  for (const cuda::DeviceInfo& device : cuda::listDevices()) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("kind", "cuda");
    entry.Set("index", device.index);
    entry.Set("name", device.name);
    entry.Set("computeCapability", device.computeCapability);
    entry.Set("totalMemory", double(device.totalMemory));
    if (MOEKIT_EMULATED) entry.Set("emulated", true);
    list.Set(list.Length(), entry);
  }
#endif
  return list;
}

Napi::Value buildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("cuda", Napi::Boolean::New(env, MOEKIT_HAVE_CUDA != 0));
  out.Set("cudaArchitectures", MOEKIT_CUDA_ARCHITECTURES);
  out.Set("emulated", Napi::Boolean::New(env, MOEKIT_EMULATED != 0));
  out.Set("commBackends", commBackends(env));
  return out;
}

// The device of cudaStats / cudaResetStats / cudaSynchronize: 'cuda:N' (made current). In a
// build without CUDA, readDevice throws DeviceError.
namespace {

int cudaDeviceArg(const Napi::CallbackInfo& info, const char* call) {
  if (info.Length() != 1) throw Error(ErrorKind::Argument, std::string(call) + "(device) takes 1 argument");
  const DeviceArg device = readDevice(info[0], "device");
  if (!device.cuda) throw Error(ErrorKind::Device, std::string("device: expected 'cuda:N', got 'cpu'"));
  return device.index;
}

}  // namespace

Napi::Value cudaStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    [[maybe_unused]] const int device = cudaDeviceArg(info, "cudaStats");
    Napi::Object out = Napi::Object::New(env);
#if MOEKIT_HAVE_CUDA
    const cuda::DeviceStats s = cuda::readDeviceStats(device);
    out.Set("hostToDeviceBytes", double(s.hostToDeviceBytes));
    out.Set("deviceToHostBytes", double(s.deviceToHostBytes));
    out.Set("synchronizations", double(s.synchronizations));
    out.Set("allocations", double(s.allocations));
    out.Set("launches", double(s.launches));
    out.Set("liveBytes", double(s.liveBytes));
    out.Set("peakBytes", double(s.peakBytes));
    out.Set("reservedBytes", double(s.reservedBytes));
#endif
    return out;
  });
}

Napi::Value cudaResetStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    [[maybe_unused]] const int device = cudaDeviceArg(info, "cudaResetStats");
#if MOEKIT_HAVE_CUDA
    cuda::resetDeviceStats(device);
#endif
    return env.Undefined();
  });
}

Napi::Value cudaSynchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    [[maybe_unused]] const int device = cudaDeviceArg(info, "cudaSynchronize");
#if MOEKIT_HAVE_CUDA
    cuda::synchronizeDevice(device);
#endif
    return env.Undefined();
  });
}

#if MOEKIT_EMULATED
Napi::Value setEmulatedComputeCapability(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 1 || !info[0].IsNumber())
      throw Error(ErrorKind::Argument, "setEmulatedComputeCapability(cc): cc must be a number");
    cuda::setEmulatedComputeCapability(info[0].As<Napi::Number>().Int32Value());
    return env.Undefined();
  });
}
#endif

}  // namespace moekit::addon
