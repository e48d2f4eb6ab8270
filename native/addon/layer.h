// NativeMoELayer: the layer of native/layer/moe_layer.h for JavaScript (lib/layer.ts wraps it).
// It holds its parameter, state and gradient tensors' storage alive and refuses to run when any
// of them was disposed; a parallel layer also holds its communicators' JavaScript objects.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "tensor.h"
#include "../layer/moe_layer.h"

namespace moekit::addon {

class NativeMoELayer : public Napi::ObjectWrap<NativeMoELayer> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit NativeMoELayer(const Napi::CallbackInfo& info);

 private:
  Napi::Value forward(const Napi::CallbackInfo& info);
  Napi::Value backward(const Napi::CallbackInfo& info);
  Napi::Value endStep(const Napi::CallbackInfo& info);
  Napi::Value allReduceGrads(const Napi::CallbackInfo& info);
  Napi::Value exchangeStats(const Napi::CallbackInfo& info);
  Napi::Value getStep(const Napi::CallbackInfo& info);
  void setStep(const Napi::CallbackInfo& info, const Napi::Value& value);
  Napi::Value getSeed(const Napi::CallbackInfo& info);
  void setSeed(const Napi::CallbackInfo& info, const Napi::Value& value);

  // A parameter buffer: checks dtype f32 and shape, keeps the storage alive.
  // The tensor's storage, kept alive by the layer; `version` (when given) receives its write counter.
  float* hold(const Napi::Value& value, const std::string& name, const std::vector<int64_t>& shape,
              const uint64_t** version = nullptr);
  // A routing result on the layer's device: a device copy of `device` when the router kept the
  // array there (Routing::device), else `values` written up.
  template <typename T>
  Napi::Object routingTensor(Napi::Env env, DType dtype, const std::vector<int64_t>& shape, const std::vector<T>& values,
                             const T* device);
  // DisposedError naming the first held tensor that was disposed.
  void checkHeld() const;
  // Before every call: the constructor finished, checkHeld, and the layer's cuda device current.
  void enter() const;

  std::unique_ptr<MoELayer> layer_;
  std::vector<std::pair<std::string, StorageRef>> held_;
  Napi::ObjectReference expertComm_, dataComm_;  // parallel.expert / parallel.data, kept alive
  int hidden_ = 0, experts_ = 0;
  const char* device_ = "cpu";  // the backend's name, reported with the precision mode
  const char* gemm_ = "cpu";    // the expert GEMMs' path (cuda::expertGemm), reported likewise
  int cudaDevice_ = -1;         // the cuda device index, −1 on the cpu
};

}  // namespace moekit::addon
