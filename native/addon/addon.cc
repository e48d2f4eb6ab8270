// Registration of the moekit addon: one entry per native class or function group. lib/native.ts
// declares the same surface in TypeScript.
#include <napi.h>

#include "addon_data.h"
#include "comm.h"
#include "devices.h"
#include "errors.h"
#include "layer.h"
#include "ops.h"
#include "tensor.h"

namespace moekit::addon {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  AddonData* data = new AddonData();
  env.SetInstanceData(data);
  Napi::Function tensor = NativeTensor::define(env);
  data->tensorConstructor = Napi::Persistent(tensor);
  exports.Set("NativeTensor", tensor);
  exports.Set("setErrorClasses", Napi::Function::New(env, setErrorClasses, "setErrorClasses"));
  exports.Set("devices", Napi::Function::New(env, devices, "devices"));
  exports.Set("buildInfo", Napi::Function::New(env, buildInfo, "buildInfo"));
  exports.Set("liveBytes", Napi::Function::New(env, liveBytes, "liveBytes"));
  exports.Set("availableMemory", Napi::Function::New(env, availableMemory, "availableMemory"));
  exports.Set("cudaStats", Napi::Function::New(env, cudaStats, "cudaStats"));
  exports.Set("cudaResetStats", Napi::Function::New(env, cudaResetStats, "cudaResetStats"));
  exports.Set("cudaSynchronize", Napi::Function::New(env, cudaSynchronize, "cudaSynchronize"));
#if MOEKIT_EMULATED
  exports.Set("setEmulatedComputeCapability",
              Napi::Function::New(env, setEmulatedComputeCapability, "setEmulatedComputeCapability"));
#endif
  exports.Set("NativeMoELayer", NativeMoELayer::define(env));
  exports.Set("NativeCommunicator", NativeCommunicator::define(env));
  registerOps(env, exports);
  return exports;
}

}  // namespace moekit::addon

static Napi::Object initMoekit(Napi::Env env, Napi::Object exports) { return moekit::addon::init(env, exports); }

NODE_API_MODULE(moekit, initMoekit)
