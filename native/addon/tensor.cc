#include "tensor.h"

#include <cstring>
#include <string>

#include "../cpu/convert.h"
#include "../cpu/host_memory.h"
#include "addon_data.h"
#include "args.h"
#include "device_arg.h"
#include "errors.h"
#if MOEKIT_HAVE_CUDA
#include "../cuda/devices.h"
#endif

namespace moekit::addon {

namespace {

// Marks the objects this class constructed: unwrap() checks the tag, which JavaScript cannot
// forge (an instanceof test runs the constructor's Symbol.hasInstance, which a caller can replace).
constexpr napi_type_tag kTensorTag = {0x6d6f656b69742e74, 0x656e736f722e7631};

// Drops one owner of a storage; when it was the last, the bytes leave V8's external accounting.
// Runs in finalizers, where nothing may throw: the status is not turned into an exception.
void dropOwner(Napi::Env env, std::shared_ptr<cpu::Storage>& owner) {
  if (owner && owner.use_count() == 1 && !owner->released() && owner->bytes() > 0) {
    int64_t adjusted = 0;
    napi_adjust_external_memory(env, -int64_t(owner->bytes()), &adjusted);
  }
  owner.reset();
}

void finalizeView(Napi::Env env, void*, std::shared_ptr<cpu::Storage>* owner) {
  dropOwner(env, *owner);
  delete owner;
}

// Storage is zero-filled, which commits every page: a request the machine cannot hold would be
// ended by the kernel's OOM killer rather than refused. Requests from kCheckedBytes up are
// checked against the available host memory first (smaller ones skip the /proc read).
constexpr size_t kCheckedBytes = size_t(64) << 20;

std::shared_ptr<cpu::Storage> allocate(DType dtype, const std::vector<int64_t>& shape, size_t bytes) {
  const auto tooLarge = [&](const std::string& why) {
    return Error(ErrorKind::Argument, "shape " + shapeString(shape) + ": expected a " + dtypeName(dtype) +
                                          " tensor that fits in host memory, got one of " + std::to_string(bytes) +
                                          " bytes (" + why + ")");
  };
  if (bytes >= kCheckedBytes) {
    const int64_t available = cpu::availableHostMemory();
    if (int64_t(bytes) > available) throw tooLarge(std::to_string(available) + " bytes are available");
  }
  try {
    return std::make_shared<cpu::Storage>(bytes);
  } catch (const std::bad_alloc&) {
    throw tooLarge("the allocation failed: out of memory");
  }
}

Napi::String deviceString(Napi::Env env, int device) { return Napi::String::New(env, deviceName(device)); }

// The optional device argument at `index` of a binding: −1 (cpu) when absent.
int optionalDevice(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || info[index].IsUndefined()) return -1;
  const DeviceArg device = readDevice(info[index], "device");
  return device.cuda ? device.index : -1;
}

}  // namespace

Napi::Function NativeTensor::define(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {StaticMethod("fromData", &NativeTensor::fromData),
                      StaticMethod("randn", &NativeTensor::randn),
                      InstanceAccessor("shape", &NativeTensor::getShape, nullptr),
                      InstanceAccessor("dtype", &NativeTensor::getDType, nullptr),
                      InstanceAccessor("disposed", &NativeTensor::getDisposed, nullptr),
                      InstanceAccessor("nbytes", &NativeTensor::getNbytes, nullptr),
                      InstanceAccessor("device", &NativeTensor::getDevice, nullptr),
                      InstanceMethod("view", &NativeTensor::view),
                      InstanceMethod("toArray", &NativeTensor::toArray),
                      InstanceMethod("cast", &NativeTensor::cast),
                      InstanceMethod("zero", &NativeTensor::zero),
                      InstanceMethod("write", &NativeTensor::write),
                      InstanceMethod("copyFrom", &NativeTensor::copyFromTensor),
                      InstanceMethod("dispose", &NativeTensor::dispose)});
}

// new NativeTensor(dtype, shape, device?): zero-filled storage on the cpu (device −1 or absent) or
// on cuda:device.
NativeTensor::NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 2 && info.Length() != 3) {
      throw Error(ErrorKind::Argument, "new NativeTensor(dtype, shape, device?) takes 2 or 3 arguments, got " +
                                           std::to_string(info.Length()));
    }
    dtype_ = readDType(info[0], "dtype");
    shape_ = readShape(info[1], "shape");
    numel_ = numelOf(shape_);
    device_ = optionalDevice(info, 2);
    if (device_ < 0) {
      storage_ = allocate(dtype_, shape_, bytes());
      if (bytes() > 0) Napi::MemoryManagement::AdjustExternalMemory(env, int64_t(bytes()));
    } else {
#if MOEKIT_HAVE_CUDA
      deviceStorage_ = std::make_shared<cuda::DeviceStorage>(device_, bytes());
#endif
    }
    info.This().As<Napi::Object>().TypeTag(&kTensorTag);
    return env.Undefined();
  });
}

NativeTensor::~NativeTensor() { dropOwner(Env(), storage_); }

NativeTensor* NativeTensor::create(Napi::Env env, DType dtype, const std::vector<int64_t>& shape, Napi::Object* handle,
                                   int device) {
  Napi::Array dims = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) dims.Set(uint32_t(i), Napi::Number::New(env, double(shape[i])));
  *handle = addonData(env).tensorConstructor.New({Napi::Number::New(env, int(dtype)), dims, deviceString(env, device)});
  return Unwrap(*handle);
}

NativeTensor& NativeTensor::unwrap(const Napi::Value& value, const char* name) {
  if (value.IsObject()) {
    Napi::Object object = value.As<Napi::Object>();
    if (object.CheckTypeTag(&kTensorTag)) return *Unwrap(object);
  }
  throw Error(ErrorKind::Argument, std::string(name) + " must be a native tensor, got " + describe(value));
}

bool StorageRef::released() const {
  if (host) return host->released();
#if MOEKIT_HAVE_CUDA
  if (device) return device->released();
#endif
  return true;
}

void NativeTensor::checkLive(const char* name) const {
  if (released()) throw Error(ErrorKind::Disposed, std::string(name) + " is a disposed tensor and cannot be used");
}

void* NativeTensor::data(const char* name) const {
  checkLive(name);
  if (device_ >= 0)
    throw Error(ErrorKind::Device, std::string(name) + ": expected a cpu tensor, got one on cuda:" + std::to_string(device_));
  return storage_->data();
}

void* NativeTensor::storageData(const char* name) const {
  checkLive(name);
  if (device_ < 0) return storage_->data();
#if MOEKIT_HAVE_CUDA
  cuda::selectDevice(device_);
  return deviceStorage_->data();
#else
  return nullptr;  // unreachable: a build without CUDA makes no cuda tensor
#endif
}

void* NativeTensor::writableStorageData(const char* name) {
  void* data = storageData(name);
#if MOEKIT_HAVE_CUDA
  if (deviceStorage_) deviceStorage_->markWritten();
#endif
  return data;
}

const uint64_t* NativeTensor::version() const {
#if MOEKIT_HAVE_CUDA
  if (deviceStorage_) return deviceStorage_->version();
#endif
  return nullptr;
}

void NativeTensor::readBytes(void* host, const char* name) const {
  checkLive(name);
  if (device_ < 0) {
    if (bytes() > 0) std::memcpy(host, storage_->data(), bytes());
    return;
  }
#if MOEKIT_HAVE_CUDA
  deviceStorage_->readBytes(host, bytes());
#endif
}

void NativeTensor::writeBytes(const void* host, const char* name) {
  checkLive(name);
  if (device_ < 0) {
    if (bytes() > 0) std::memcpy(storage_->data(), host, bytes());
    return;
  }
#if MOEKIT_HAVE_CUDA
  deviceStorage_->writeBytes(0, host, bytes());
#endif
}

void NativeTensor::copyFrom(const NativeTensor& source, const char* name) {
  checkLive(name);
  source.checkLive(name);
  if (source.bytes() != bytes()) throw Error(ErrorKind::Shape, std::string(name) + ": copy between tensors of different sizes");
  if (device_ < 0) {
    source.readBytes(storage_->data(), name);
    return;
  }
  if (source.device_ < 0) {
    writeBytes(source.storage_->data(), name);
    return;
  }
#if MOEKIT_HAVE_CUDA
  deviceStorage_->copyFrom(*source.deviceStorage_, bytes());
#endif
}

// NativeTensor.fromData(data, dtype, shape, raw, device?):
//   raw = true : data is any typed array whose bytes are the tensor's storage (byteLength = nbytes)
//   raw = false: data is a Float32Array of numel values encoded to a float dtype (RNE, F1)
// On a cuda device the bytes (encoded on the host) go up once, through pinned staging.
Napi::Value NativeTensor::fromData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 4 && info.Length() != 5)
      throw Error(ErrorKind::Argument, "fromData(data, dtype, shape, raw, device?) takes 4 or 5 arguments");
    if (!info[0].IsTypedArray()) {
      throw Error(ErrorKind::Argument, "data must be a typed array, got " + describe(info[0]));
    }
    const DType dtype = readDType(info[1], "dtype");
    const std::vector<int64_t> shape = readShape(info[2], "shape");
    const bool raw = info[3].ToBoolean();
    const int device = optionalDevice(info, 4);
    Napi::TypedArray source = info[0].As<Napi::TypedArray>();
    const int64_t numel = numelOf(shape);
    const size_t expectedBytes = size_t(numel) * elementSize(dtype);
    if (raw) {
      if (source.ByteLength() != expectedBytes) {
        throw Error(ErrorKind::Shape, "data has " + std::to_string(source.ByteLength()) + " bytes but shape " +
                                          shapeString(shape) + " of " + dtypeName(dtype) + " needs " +
                                          std::to_string(expectedBytes));
      }
    } else {
      if (source.TypedArrayType() != napi_float32_array) {
        throw Error(ErrorKind::DType, "data must be a Float32Array to be encoded as " + std::string(dtypeName(dtype)));
      }
      if (!isFloat(dtype)) {
        throw Error(ErrorKind::DType, std::string("dtype ") + dtypeName(dtype) + " cannot be encoded from f32 values");
      }
      if (int64_t(source.ElementLength()) != numel) {
        throw Error(ErrorKind::Shape, "data has " + std::to_string(source.ElementLength()) + " elements but shape " +
                                          shapeString(shape) + " needs " + std::to_string(numel));
      }
    }
    Napi::Object handle;
    NativeTensor* tensor = create(env, dtype, shape, &handle, device);
    // The source's address is taken last, after every step that could run JavaScript, straight
    // from napi_get_typedarray_info: source.ArrayBuffer() refuses a typed array over a
    // SharedArrayBuffer (it is not an ArrayBuffer), whose bytes are copied like any other.
    void* first = nullptr;
    if (napi_get_typedarray_info(env, source, nullptr, nullptr, &first, nullptr, nullptr) != napi_ok) {
      throw Error(ErrorKind::Argument, "data: the bytes of the typed array cannot be read");
    }
    const uint8_t* bytes = static_cast<const uint8_t*>(first);
    if (source.ByteLength() > 0 && bytes == nullptr) {
      throw Error(ErrorKind::Disposed, "data is a view of a detached (disposed) buffer");
    }
    if (raw) {
      tensor->writeBytes(bytes, "tensor");
    } else if (device < 0) {
      cpu::encodeFromF32(reinterpret_cast<const float*>(bytes), tensor->data("tensor"), numel, dtype);
    } else {
      std::vector<uint8_t> encoded(expectedBytes);
      cpu::encodeFromF32(reinterpret_cast<const float*>(bytes), encoded.data(), numel, dtype);
      tensor->writeBytes(encoded.data(), "tensor");
    }
    return handle;
  });
}

// NativeTensor.randn(shape, seed, std, dtype, device?): Philox-4x32-10 normals (cpu/convert.h),
// encoded on the host (then copied up for a cuda device: the same values on every device).
Napi::Value NativeTensor::randn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 4 && info.Length() != 5)
      throw Error(ErrorKind::Argument, "randn(shape, seed, std, dtype, device?) takes 4 or 5 arguments");
    const std::vector<int64_t> shape = readShape(info[0], "shape");
    const uint64_t seed = readSafeUint(info[1], "seed");
    const double std = readNumber(info[2], "std");
    const DType dtype = readDType(info[3], "dtype");
    if (!isFloat(dtype)) throw Error(ErrorKind::DType, std::string("randn needs a float dtype, got ") + dtypeName(dtype));
    const int device = optionalDevice(info, 4);
    Napi::Object handle;
    NativeTensor* tensor = create(env, dtype, shape, &handle, device);
    if (dtype == DType::F32 && device < 0) {
      cpu::fillNormal(static_cast<float*>(tensor->data("tensor")), tensor->numel(), seed, float(std));
      return handle;
    }
    std::vector<float> values(size_t(tensor->numel()));
    cpu::fillNormal(values.data(), tensor->numel(), seed, float(std));
    if (dtype == DType::F32) {
      tensor->writeBytes(values.data(), "tensor");
    } else if (device < 0) {
      cpu::encodeFromF32(values.data(), tensor->data("tensor"), tensor->numel(), dtype);
    } else {
      std::vector<uint8_t> encoded(tensor->bytes());
      cpu::encodeFromF32(values.data(), encoded.data(), tensor->numel(), dtype);
      tensor->writeBytes(encoded.data(), "tensor");
    }
    return handle;
  });
}

Napi::Value NativeTensor::getShape(const Napi::CallbackInfo& info) {
  Napi::Array dims = Napi::Array::New(info.Env(), shape_.size());
  for (size_t i = 0; i < shape_.size(); ++i) dims.Set(uint32_t(i), Napi::Number::New(info.Env(), double(shape_[i])));
  return dims;
}

Napi::Value NativeTensor::getDType(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), int(dtype_)); }

Napi::Value NativeTensor::getDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), released()); }

Napi::Value NativeTensor::getDevice(const Napi::CallbackInfo& info) { return deviceString(info.Env(), device_); }

Napi::Value NativeTensor::getNbytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes())); }

// view(): the storage as an ArrayBuffer, shared with native code (writes are seen both ways); a
// cuda tensor has none (DeviceError).
Napi::Value NativeTensor::view(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkLive("tensor");
    if (device_ >= 0)
      throw Error(ErrorKind::Device, "view(): a tensor on cuda:" + std::to_string(device_) +
                                         " has no host view; copy it with toArray() or to('cpu')");
    void* storage = data("tensor");
    if (!buffer_.IsEmpty()) {
      Napi::Value cached = buffer_.Value();
      if (!cached.IsEmpty() && cached.IsArrayBuffer()) return cached;
    }
    Napi::ArrayBuffer buffer =
        bytes() == 0 ? Napi::ArrayBuffer::New(env, 0)
                     : Napi::ArrayBuffer::New(env, storage, bytes(), finalizeView, new std::shared_ptr<cpu::Storage>(storage_));
    buffer_ = Napi::Weak(buffer.As<Napi::Object>());
    return buffer;
  });
}

// toArray(): a copy (a cuda tensor's waits for its bytes); float dtypes decode to Float32Array,
// i32 → Int32Array, u8 → Uint8Array.
Napi::Value NativeTensor::toArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkLive("tensor");
    if (dtype_ == DType::I32) {
      Napi::Int32Array out = Napi::Int32Array::New(env, size_t(numel_));
      readBytes(out.Data(), "tensor");
      return out;
    }
    if (dtype_ == DType::U8) {
      Napi::Uint8Array out = Napi::Uint8Array::New(env, size_t(numel_));
      readBytes(out.Data(), "tensor");
      return out;
    }
    Napi::Float32Array out = Napi::Float32Array::New(env, size_t(numel_));
    if (device_ < 0) {
      cpu::decodeToF32(storage_->data(), out.Data(), numel_, dtype_);
    } else {
      std::vector<uint8_t> raw(bytes());
      readBytes(raw.data(), "tensor");
      cpu::decodeToF32(raw.data(), out.Data(), numel_, dtype_);
    }
    return out;
  });
}

// cast(dtype, device?): a new tensor of the same shape converted element-wise (cpu/convert.h) on
// `device` (default: this tensor's). Across devices the bytes are copied; a conversion between
// dtypes runs on the host.
Napi::Value NativeTensor::cast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 1 && info.Length() != 2) throw Error(ErrorKind::Argument, "cast(dtype, device?) takes 1 or 2 arguments");
    const DType to = readDType(info[0], "dtype");
    const int device = info.Length() == 2 && !info[1].IsUndefined() ? optionalDevice(info, 1) : device_;
    checkLive("tensor");
    Napi::Object handle;
    NativeTensor* out = create(env, to, shape_, &handle, device);
    if (to == dtype_) {
      out->copyFrom(*this, "tensor");
    } else if (device_ < 0 && device < 0) {
      cpu::convert(storage_->data(), dtype_, out->data("tensor"), to, numel_);
    } else {
      std::vector<uint8_t> source(bytes()), converted(out->bytes());
      readBytes(source.data(), "tensor");
      cpu::convert(source.data(), dtype_, converted.data(), to, numel_);
      out->writeBytes(converted.data(), "tensor");
    }
    return handle;
  });
}

// zero(): every element 0 (raw bytes), on the tensor's device.
Napi::Value NativeTensor::zero(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkLive("tensor");
    if (device_ < 0) {
      if (bytes() > 0) std::memset(storage_->data(), 0, bytes());
    } else {
#if MOEKIT_HAVE_CUDA
      deviceStorage_->zero();
#endif
    }
    return env.Undefined();
  });
}

// write(data): overwrites the storage with the bytes of the typed array `data` (byteLength =
// nbytes); a cuda tensor's go up through pinned staging.
Napi::Value NativeTensor::write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 1 || !info[0].IsTypedArray())
      throw Error(ErrorKind::Argument, "write(data) takes a typed array, got " + (info.Length() ? describe(info[0]) : "nothing"));
    Napi::TypedArray source = info[0].As<Napi::TypedArray>();
    if (source.ByteLength() != bytes())
      throw Error(ErrorKind::Shape, "data has " + std::to_string(source.ByteLength()) + " bytes, the tensor " + std::to_string(bytes()));
    void* first = nullptr;
    if (napi_get_typedarray_info(env, source, nullptr, nullptr, &first, nullptr, nullptr) != napi_ok || (bytes() > 0 && !first))
      throw Error(ErrorKind::Disposed, "data: the bytes of the typed array cannot be read");
    writeBytes(first, "tensor");
    return env.Undefined();
  });
}

// copyFrom(source): overwrites the storage with source's (same dtype and shape, any device).
Napi::Value NativeTensor::copyFromTensor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    if (info.Length() != 1) throw Error(ErrorKind::Argument, "copyFrom(source) takes 1 argument");
    const NativeTensor& source = unwrap(info[0], "source");
    source.checkLive("source");
    checkLive("tensor");
    if (source.dtype_ != dtype_)
      throw Error(ErrorKind::DType, std::string("source: expected a ") + dtypeName(dtype_) + " tensor, got " + dtypeName(source.dtype_));
    if (source.shape_ != shape_)
      throw Error(ErrorKind::Shape, "source: expected shape " + shapeString(shape_) + ", got " + shapeString(source.shape_));
    copyFrom(source, "source");
    return env.Undefined();
  });
}

Napi::Value NativeTensor::dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!buffer_.IsEmpty()) {
    Napi::Value cached = buffer_.Value();
    if (!cached.IsEmpty() && cached.IsArrayBuffer()) cached.As<Napi::ArrayBuffer>().Detach();
    buffer_.Reset();
  }
  if (storage_) {
    const size_t freed = storage_->release();
    if (freed > 0) Napi::MemoryManagement::AdjustExternalMemory(env, -int64_t(freed));
  }
#if MOEKIT_HAVE_CUDA
  if (deviceStorage_) deviceStorage_->release();
#endif
  return env.Undefined();
}

Napi::Value liveBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(cpu::Storage::liveBytes()));
}

Napi::Value availableMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(cpu::availableHostMemory()));
}

}  // namespace moekit::addon
