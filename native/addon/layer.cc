#include "layer.h"

#include <cstring>

#include "../cpu/cpu_backend.h"
#if MOEKIT_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#include "../cuda/devices.h"
#include "../cuda/expert_gemm.h"
#endif
#include "args.h"
#include "comm.h"
#include "device_arg.h"
#include "errors.h"
#include "host_copy.h"
#include "router_spec.h"
#include "tensor.h"

namespace moekit::addon {

namespace {

Napi::Object objectField(const Napi::Object& obj, const char* key, const std::string& where) {
  Napi::Value value = obj.Get(key);
  if (!value.IsObject()) throw Error(ErrorKind::Argument, where + "." + key + " must be an object, got " + describe(value));
  return value.As<Napi::Object>();
}

Napi::Array numberArray(Napi::Env env, const std::vector<int64_t>& values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) out.Set(uint32_t(i), Napi::Number::New(env, double(values[i])));
  return out;
}

Napi::Float64Array f64Array(Napi::Env env, const std::vector<double>& values) {
  Napi::Float64Array out = Napi::Float64Array::New(env, values.size());
  std::copy(values.begin(), values.end(), out.Data());
  return out;
}


Napi::Value nonFiniteObject(Napi::Env env, const NonFinite& found) {
  static constexpr const char* kStages[] = {"", "router.weight", "router", "expert", "shared"};
  if (found.stage == NonFinite::Stage::None) return env.Null();
  Napi::Object object = Napi::Object::New(env);
  object.Set("stage", kStages[int(found.stage)]);
  object.Set("token", found.token);
  object.Set("expert", found.expert);
  return object;
}

// spec.precision {compute: 0 f32 | 1 bf16, experts: 0 same | 1 fp8}; absent = f32/same. The
// experts stage rejects fp8 with f32 compute.
Precision readPrecision(const Napi::Object& spec) {
  Precision precision;
  if (spec.Get("precision").IsUndefined()) return precision;
  const Napi::Object p = objectField(spec, "precision", "spec");
  precision.compute = Precision::Compute(readIntField(p, "compute", 0, 1, "spec.precision"));
  precision.experts = Precision::Experts(readIntField(p, "experts", 0, 1, "spec.precision"));
  return precision;
}

// The expert path a forward ran: {compute: 'f32'|'bf16', experts: 'same'|'fp8', device: 'cpu'|'cuda',
// gemm: 'cpu'|'f32-simt'|'tensor-core'}.
Napi::Object precisionObject(Napi::Env env, Precision precision, const char* device, const char* gemm) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("compute", precision.compute == Precision::Compute::Bf16 ? "bf16" : "f32");
  object.Set("experts", precision.experts == Precision::Experts::Fp8 ? "fp8" : "same");
  object.Set("device", device);
  object.Set("gemm", gemm);
  return object;
}

// The CUDA backend for a layer on cuda:`device`, and the name of the expert GEMMs it runs there.
const Backend& cudaBackendOf([[maybe_unused]] const Precision& precision, [[maybe_unused]] int device,
                             [[maybe_unused]] const char*& gemm) {
#if MOEKIT_HAVE_CUDA
  switch (cuda::expertGemm(precision, device)) {
    case cuda::ExpertGemm::F32Simt: gemm = "f32-simt"; break;
    case cuda::ExpertGemm::TensorCore: gemm = "tensor-core"; break;
    case cuda::ExpertGemm::TensorCoreWgmma: gemm = "tensor-core-wgmma"; break;
  }
  return cuda::cudaBackend();
#else
  throw Error(ErrorKind::Device, "spec.device: this build has no CUDA backend");
#endif
}

}  // namespace

Napi::Function NativeMoELayer::define(Napi::Env env) {
  return DefineClass(env, "NativeMoELayer",
                     {InstanceMethod("forward", &NativeMoELayer::forward),
                      InstanceMethod("backward", &NativeMoELayer::backward),
                      InstanceMethod("endStep", &NativeMoELayer::endStep),
                      InstanceMethod("allReduceGrads", &NativeMoELayer::allReduceGrads),
                      InstanceMethod("exchangeStats", &NativeMoELayer::exchangeStats),
                      InstanceAccessor("step", &NativeMoELayer::getStep, &NativeMoELayer::setStep),
                      InstanceAccessor("seed", &NativeMoELayer::getSeed, &NativeMoELayer::setSeed)});
}

float* NativeMoELayer::hold(const Napi::Value& value, const std::string& name, const std::vector<int64_t>& shape,
                           const uint64_t** version) {
  NativeTensor& tensor = NativeTensor::unwrap(value, name.c_str());
  if (tensor.dtype() != DType::F32) {
    throw Error(ErrorKind::DType, name + " must be f32, got " + dtypeName(tensor.dtype()));
  }
  if (tensor.shape() != shape) {
    throw Error(ErrorKind::Shape, name + " must have shape " + shapeString(shape) + ", got " + shapeString(tensor.shape()));
  }
  if (tensor.device() != cudaDevice_) {
    throw Error(ErrorKind::Device, name + " is on " + deviceName(tensor.device()) + ", the layer on " + deviceName(cudaDevice_));
  }
  float* data = static_cast<float*>(tensor.storageData(name.c_str()));
  held_.emplace_back(name, tensor.ref());
  if (version) *version = tensor.version();
  return data;
}

void NativeMoELayer::checkHeld() const {
  for (const auto& [name, storage] : held_) {
    if (storage.released()) throw Error(ErrorKind::Disposed, "the layer's tensor " + name + " was disposed");
  }
}

void NativeMoELayer::enter() const {
  if (!layer_) throw Error(ErrorKind::Argument, "the layer was not constructed");
  checkHeld();
#if MOEKIT_HAVE_CUDA
  // Another layer, or another call on this thread, may have made another device current.
  if (cudaDevice_ >= 0) cuda::selectDevice(cudaDevice_);
#endif
}

// new NativeMoELayer(spec, params, grads, parallel?)
//   spec:     the flat spec of router_spec.h plus {activation, groups[g].ffn, sharedCount, sharedFfn,
//             precision?: {compute, experts}}
//   params:   {routerWeight, routerBias, routerLoad, groups: [{w1, w3?, w2}], shared?: {w1, w3?, w2}}
//   grads:    {routerWeight, groups: [{w1, w3?, w2}], shared?: {…}}
//   parallel: {expert?, data?: NativeCommunicator, ranksPerNode?} (moe_layer.h); with `expert` of
//             P ranks, groups[g] hold this rank's block of count/P experts
NativeMoELayer::NativeMoELayer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeMoELayer>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || info.Length() > 4 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsObject()) {
      throw Error(ErrorKind::Argument, "new NativeMoELayer(spec, params, grads, parallel?) takes three objects and an optional fourth");
    }
    ParallelGroups parallel;
    if (info.Length() == 4 && !info[3].IsUndefined() && !info[3].IsNull()) {
      if (!info[3].IsObject()) throw Error(ErrorKind::Argument, "parallel must be an object, got " + describe(info[3]));
      const Napi::Object p = info[3].As<Napi::Object>();
      if (!p.Get("expert").IsUndefined()) {
        parallel.expert = &NativeCommunicator::unwrap(p.Get("expert"), "parallel.expert");
        expertComm_ = Napi::Persistent(p.Get("expert").As<Napi::Object>());
      }
      if (!p.Get("data").IsUndefined()) {
        parallel.data = &NativeCommunicator::unwrap(p.Get("data"), "parallel.data");
        dataComm_ = Napi::Persistent(p.Get("data").As<Napi::Object>());
      }
      if (!p.Get("ranksPerNode").IsUndefined()) parallel.ranksPerNode = readIntField(p, "ranksPerNode", 0, 1 << 20, "parallel");
    }
    const int ranks = parallel.expert ? parallel.expert->size() : 1;
    const Napi::Object specObj = info[0].As<Napi::Object>();
    const Napi::Object params = info[1].As<Napi::Object>(), grads = info[2].As<Napi::Object>();
    LayerSpec spec;
    spec.router = readRouterSpec(specObj);
    spec.activation = Activation(readIntField(specObj, "activation", 0, 2, "spec"));
    const bool swiglu = spec.activation == Activation::Swiglu;
    const int64_t H = spec.router.hidden;
    hidden_ = int(H);
    Napi::Array groupSpecs = specObj.Get("groups").As<Napi::Array>();
    for (uint32_t g = 0; g < groupSpecs.Length(); ++g) {
      spec.groupFfn.push_back(readIntField(groupSpecs.Get(g).As<Napi::Object>(), "ffn", 1, 1 << 30,
                                           "spec.groups[" + std::to_string(g) + "]"));
      experts_ += spec.router.groupSizes[g];
    }
    spec.sharedCount = readIntField(specObj, "sharedCount", 0, 1 << 20, "spec");
    spec.sharedFfn = spec.sharedCount > 0 ? readIntField(specObj, "sharedFfn", 1, 1 << 30, "spec") : 0;
    spec.precision = readPrecision(specObj);

    const int64_t E = experts_;
    const DeviceArg device = readDevice(specObj.Get("device"), "spec.device");  // throws for cuda without CUDA
    if (device.cuda) cudaDevice_ = device.index;
    LayerBuffers buffers;
    buffers.routerWeight = hold(params.Get("routerWeight"), "router.weight", {E, H});
    buffers.routerBias = hold(params.Get("routerBias"), "router.bias", {E});
    buffers.routerLoad = hold(params.Get("routerLoad"), "router.load", {E});
    buffers.routerWeightGrad = hold(grads.Get("routerWeight"), "grad router.weight", {E, H});

    auto expertGroup = [&](const Napi::Object& p, const Napi::Object& gr, const std::string& name, int count, int ffn) {
      ExpertGroup group;
      group.count = count;
      group.ffn = ffn;
      const int64_t n = count, f = ffn;
      group.w1 = hold(p.Get("w1"), name + ".w1", {n, f, H}, &group.w1Version);
      group.w2 = hold(p.Get("w2"), name + ".w2", {n, H, f}, &group.w2Version);
      group.g1 = hold(gr.Get("w1"), "grad " + name + ".w1", {n, f, H});
      group.g2 = hold(gr.Get("w2"), "grad " + name + ".w2", {n, H, f});
      if (swiglu) {
        group.w3 = hold(p.Get("w3"), name + ".w3", {n, f, H}, &group.w3Version);
        group.g3 = hold(gr.Get("w3"), "grad " + name + ".w3", {n, f, H});
      }
      return group;
    };
    Napi::Value paramGroups = params.Get("groups"), gradGroups = grads.Get("groups");
    if (!paramGroups.IsArray() || !gradGroups.IsArray() ||
        paramGroups.As<Napi::Array>().Length() != groupSpecs.Length() ||
        gradGroups.As<Napi::Array>().Length() != groupSpecs.Length()) {
      throw Error(ErrorKind::Argument, "params.groups and grads.groups must hold one entry per expert group");
    }
    for (uint32_t g = 0; g < groupSpecs.Length(); ++g) {
      const std::string where = "groups[" + std::to_string(g) + "]";
      const int count = spec.router.groupSizes[g];
      if (count % ranks != 0) {
        throw Error(ErrorKind::Config, "experts[" + std::to_string(g) + "].count: expected a multiple of the expert-parallel size " +
                                           std::to_string(ranks) + " (parallel.expert), got " + std::to_string(count));
      }
      buffers.groups.push_back(expertGroup(objectField(paramGroups.As<Napi::Object>(), std::to_string(g).c_str(), "params"),
                                           objectField(gradGroups.As<Napi::Object>(), std::to_string(g).c_str(), "grads"),
                                           "experts." + where, count / ranks, spec.groupFfn[g]));
    }
    if (spec.sharedCount > 0) {
      buffers.shared = expertGroup(objectField(params, "shared", "params"), objectField(grads, "shared", "grads"), "shared",
                                   spec.sharedCount, spec.sharedFfn);
    }
    const Backend& backend = cudaDevice_ >= 0 ? cudaBackendOf(spec.precision, cudaDevice_, gemm_) : cpu::cpuBackend();
    device_ = backend.name();
    // The reads above ran getters (user code) after earlier tensors were held: every held
    // storage is checked again before the layer takes their addresses.
    checkHeld();
    layer_ = std::make_unique<MoELayer>(backend, std::move(spec), std::move(buffers), parallel);
    return env.Undefined();
  });
}

// forward(x, modality | null, seqLens | null, training, checkFinite) → { y, indices, weights, keep,
// counts, accepted, dropped, assignToken, assignExpert, assignWeight, flops, sharedFlops, f, P,
// maxVio, cv, entropy, balance, z, orthogonality, aux, nonFinite, precision }
// precision: the expert path that ran (precisionObject).
// nonFinite: null, or {stage: 'router.weight'|'router'|'expert'|'shared', token, expert} (moe_layer.h).
Napi::Value NativeMoELayer::forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 5) {
      throw Error(ErrorKind::Argument, "forward(x, modality, seqLens, training, checkFinite) takes 5 arguments");
    }
    // Every JavaScript value is read first (seqLens may be an array with accessors, which run
    // user code that can dispose tensors); liveness is checked and storage addresses are taken
    // after the last read, so nothing that runs in between can free what the forward uses.
    NativeTensor& x = NativeTensor::unwrap(info[0], "x");
    if (x.dtype() != DType::F32) throw Error(ErrorKind::DType, std::string("x must be f32, got ") + dtypeName(x.dtype()));
    if (x.shape().size() != 2 || x.shape()[1] != hidden_) {
      throw Error(ErrorKind::Shape, "x must have shape [T, " + std::to_string(hidden_) + "], got " + shapeString(x.shape()));
    }
    const int T = int(x.shape()[0]);
    NativeTensor* modality = nullptr;
    if (!info[1].IsNull() && !info[1].IsUndefined()) {
      modality = &NativeTensor::unwrap(info[1], "modality");
      if (modality->dtype() != DType::I32 || modality->shape() != std::vector<int64_t>{T}) {
        throw Error(ErrorKind::Shape, "modality must be an i32 tensor of shape [" + std::to_string(T) + "], got " +
                                          dtypeName(modality->dtype()) + " " + shapeString(modality->shape()));
      }
    }
    std::vector<int> seqLens;
    if (!info[2].IsNull() && !info[2].IsUndefined()) {
      if (!info[2].IsArray()) throw Error(ErrorKind::Argument, "seqLens must be an array of positive integers");
      Napi::Array lens = info[2].As<Napi::Array>();
      for (uint32_t i = 0; i < lens.Length(); ++i) {
        seqLens.push_back(int(readSafeUint(lens.Get(i), ("seqLens[" + std::to_string(i) + "]").c_str())));
      }
    }
    const bool training = info[3].ToBoolean();
    const bool checkFinite = info[4].ToBoolean();

    enter();
    if (x.device() != cudaDevice_)
      throw Error(ErrorKind::Device, "x is on " + deviceName(x.device()) + ", the layer on " + deviceName(cudaDevice_));
    Napi::Object yHandle;
    NativeTensor* y = NativeTensor::create(env, DType::F32, {T, hidden_}, &yHandle, cudaDevice_);
    const float* xData = static_cast<const float*>(x.storageData("x"));
    // The router reads modality on the host (the R2 mask is built there).
    std::vector<int32_t> modalityValues(modality ? size_t(T) : 0);
    if (modality) modality->readBytes(modalityValues.data(), "modality");
    LayerForward out;
    layer_->forward(xData, T, modality ? modalityValues.data() : nullptr, seqLens, training,
                    static_cast<float*>(y->storageData("y")), out, checkFinite);
    const Routing& r = out.routing;
    const int64_t k = r.k, E = experts_, n = int64_t(r.assignToken.size());
    Napi::Object result = Napi::Object::New(env);
    result.Set("y", yHandle);
    result.Set("indices", routingTensor(env, DType::I32, {T, k}, r.indices, r.device.indices));
    result.Set("weights", routingTensor(env, DType::F32, {T, k}, r.weights, r.device.weights));
    result.Set("keep", routingTensor(env, DType::I32, {T, k}, r.keep, r.device.keep));
    // The per-expert counts feed out.stats, read on the host: cpu tensors.
    result.Set("counts", tensorOf(env, DType::I32, {E}, r.counts, -1));
    result.Set("accepted", tensorOf(env, DType::I32, {E}, r.accepted, -1));
    result.Set("dropped", tensorOf(env, DType::I32, {E}, out.dropped, -1));
    result.Set("assignToken", routingTensor(env, DType::I32, {n}, r.assignToken, r.device.assignToken));
    result.Set("assignExpert", routingTensor(env, DType::I32, {n}, r.assignExpert, r.device.assignExpert));
    result.Set("assignWeight", routingTensor(env, DType::F32, {n}, r.assignWeight, r.device.assignWeight));
    result.Set("flops", numberArray(env, out.flops));
    result.Set("sharedFlops", Napi::Number::New(env, double(out.sharedFlops)));
    result.Set("f", f64Array(env, r.f));
    result.Set("P", f64Array(env, r.P));
    result.Set("maxVio", r.maxVio);
    result.Set("cv", r.cv);
    result.Set("entropy", r.entropy);
    result.Set("balance", r.balance);
    result.Set("z", r.z);
    result.Set("orthogonality", r.orthogonality);
    result.Set("aux", r.aux);
    result.Set("nonFinite", nonFiniteObject(env, out.nonFinite));
    result.Set("precision", precisionObject(env, layer_->spec().precision, device_, gemm_));
    return result;
  });
}

template <typename T>
Napi::Object NativeMoELayer::routingTensor(Napi::Env env, DType dtype, const std::vector<int64_t>& shape,
                                           const std::vector<T>& values, const T* device) {
  if (!device || cudaDevice_ < 0) return tensorOf(env, dtype, shape, values, cudaDevice_);
  Napi::Object handle;
  NativeTensor* tensor = NativeTensor::create(env, dtype, shape, &handle, cudaDevice_);
  layer_->memory().copy(tensor->writableStorageData("result"), device, values.size() * sizeof(T));
  return handle;
}

Napi::Value NativeMoELayer::backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 1) throw Error(ErrorKind::Argument, "backward(dy) takes 1 argument");
    enter();
    NativeTensor& dy = NativeTensor::unwrap(info[0], "dy");
    const int64_t T = layer_->tokens();
    if (dy.dtype() != DType::F32) throw Error(ErrorKind::DType, std::string("dy must be f32, got ") + dtypeName(dy.dtype()));
    if (dy.shape() != std::vector<int64_t>{T, hidden_}) {
      throw Error(ErrorKind::Shape, "dy must have the shape of y, [" + std::to_string(T) + ", " + std::to_string(hidden_) +
                                        "], got " + shapeString(dy.shape()));
    }
    if (dy.device() != cudaDevice_)
      throw Error(ErrorKind::Device, "dy is on " + deviceName(dy.device()) + ", the layer on " + deviceName(cudaDevice_));
    Napi::Object dxHandle;
    NativeTensor* dx = NativeTensor::create(env, DType::F32, {T, hidden_}, &dxHandle, cudaDevice_);
    layer_->backward(static_cast<const float*>(dy.storageData("dy")), static_cast<float*>(dx->storageData("dx")));
    return dxHandle;
  });
}

Napi::Value NativeMoELayer::endStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    enter();
    layer_->endStep();
    return env.Undefined();
  });
}

// allReduceGrads(comm | null): MoELayer::allReduceGrads, comm standing for parallel.data.
Napi::Value NativeMoELayer::allReduceGrads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 1) throw Error(ErrorKind::Argument, "allReduceGrads(comm) takes 1 argument (a communicator or null)");
    enter();
    comm::Communicator* data = nullptr;
    if (!info[0].IsNull() && !info[0].IsUndefined()) data = &NativeCommunicator::unwrap(info[0], "comm");
    layer_->allReduceGrads(data);
    return env.Undefined();
  });
}

// exchangeStats() → {messages, bytes, hierarchical}: what this rank's expert exchange sent to each
// rank since construction (row_exchange.h), or null for a layer without parallel.expert.
Napi::Value NativeMoELayer::exchangeStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    enter();
    const ExpertParallel* parallel = layer_->expertParallel();
    if (!parallel) return env.Null();
    Napi::Object stats = Napi::Object::New(env);
    stats.Set("messages", numberArray(env, parallel->exchange().messages()));
    stats.Set("bytes", numberArray(env, parallel->exchange().bytes()));
    stats.Set("hierarchical", parallel->exchange().hierarchical());
    return stats;
  });
}

void NativeMoELayer::setStep(const Napi::CallbackInfo& info, const Napi::Value& value) {
  guarded(info.Env(), [&]() -> Napi::Value {
    enter();
    layer_->router().setStep(readSafeUint(value, "step"));
    return info.Env().Undefined();
  });
}

Napi::Value NativeMoELayer::getStep(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(layer_ ? layer_->step() : 0));
}

// seed: R10's Philox key, an integer in [0, 2^53-1] (spec.router.seed until set from a state dict).
void NativeMoELayer::setSeed(const Napi::CallbackInfo& info, const Napi::Value& value) {
  guarded(info.Env(), [&]() -> Napi::Value {
    enter();
    layer_->router().setSeed(readSafeUint(value, "seed"));
    return info.Env().Undefined();
  });
}

Napi::Value NativeMoELayer::getSeed(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(layer_ ? layer_->router().seed() : 0));
}

}  // namespace moekit::addon
