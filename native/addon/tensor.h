// NativeTensor: the addon's tensor object (DESIGN §2), mirrored by lib/native.ts and wrapped by
// lib/tensor.ts. It owns 64-byte-aligned host storage and exposes it to JavaScript zero-copy as
// an external ArrayBuffer. dispose() frees the storage at once and detaches that ArrayBuffer, so
// every typed-array view of it becomes empty instead of dangling.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "../core/dtype.h"
#include "../cpu/storage.h"

namespace moekit::addon {

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  static Napi::Function define(Napi::Env env);
  // A new zero-filled tensor created through the JavaScript constructor.
  static NativeTensor* create(Napi::Env env, DType dtype, const std::vector<int64_t>& shape, Napi::Object* handle);
  // The tensor behind a JavaScript value; throws a typed error naming `name` otherwise.
  static NativeTensor& unwrap(const Napi::Value& value, const char* name);

  explicit NativeTensor(const Napi::CallbackInfo& info);
  ~NativeTensor() override;

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const { return numel_; }
  size_t bytes() const { return size_t(numel_) * elementSize(dtype_); }
  // The storage itself, for objects that keep a tensor's memory alive (the layer's parameters).
  const std::shared_ptr<cpu::Storage>& storage() const { return storage_; }
  // Storage pointer; throws DisposedError naming `name` when disposed.
  void* data(const char* name) const;

 private:
  static Napi::Value fromData(const Napi::CallbackInfo& info);
  static Napi::Value randn(const Napi::CallbackInfo& info);
  Napi::Value getShape(const Napi::CallbackInfo& info);
  Napi::Value getDType(const Napi::CallbackInfo& info);
  Napi::Value getDisposed(const Napi::CallbackInfo& info);
  Napi::Value getNbytes(const Napi::CallbackInfo& info);
  Napi::Value view(const Napi::CallbackInfo& info);
  Napi::Value toArray(const Napi::CallbackInfo& info);
  Napi::Value cast(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  std::shared_ptr<cpu::Storage> storage_;
  Napi::ObjectReference buffer_;  // weak: the external ArrayBuffer handed out by view(), if alive
};

Napi::Value liveBytes(const Napi::CallbackInfo& info);
// availableMemory(): bytes of host memory a new allocation may take (cpu/host_memory.h).
Napi::Value availableMemory(const Napi::CallbackInfo& info);

}  // namespace moekit::addon
