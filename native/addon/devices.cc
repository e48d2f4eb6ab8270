#include "devices.h"

#include "comm.h"
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
