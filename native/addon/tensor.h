// NativeTensor: the addon's tensor object (DESIGN §2, §2b), mirrored by lib/native.ts and wrapped
// by lib/tensor.ts. A cpu tensor owns 64-byte-aligned host storage and exposes it to JavaScript
// zero-copy as an external ArrayBuffer; a cuda:N tensor owns device memory of cuda:N
// (cuda/device_storage.h) and has no host view: its bytes reach the host by copy. dispose() frees
// the storage at once and detaches the ArrayBuffer, so every typed-array view of it becomes empty
// instead of dangling.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "../core/dtype.h"
#include "../cpu/storage.h"
#include "../cuda/device_storage.h"

namespace moekit::addon {

// A counted reference to a tensor's storage: keeps it alive and tells whether it was disposed.
struct StorageRef {
  std::shared_ptr<cpu::Storage> host;
  std::shared_ptr<cuda::DeviceStorage> device;
  bool released() const;
};

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  static Napi::Function define(Napi::Env env);
  // A new zero-filled tensor created through the JavaScript constructor, on the cpu (device −1)
  // or on cuda:`device`.
  static NativeTensor* create(Napi::Env env, DType dtype, const std::vector<int64_t>& shape, Napi::Object* handle,
                              int device = -1);
  // The tensor behind a JavaScript value; throws a typed error naming `name` otherwise.
  static NativeTensor& unwrap(const Napi::Value& value, const char* name);

  explicit NativeTensor(const Napi::CallbackInfo& info);
  ~NativeTensor() override;

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const { return numel_; }
  size_t bytes() const { return size_t(numel_) * elementSize(dtype_); }
  // −1 for a cpu tensor, N for cuda:N.
  int device() const { return device_; }
  bool released() const { return ref().released(); }
  // DisposedError naming `name` when disposed.
  void checkLive(const char* name) const;
  // Keeps the storage alive (the layer holds its parameters' so).
  StorageRef ref() const { return {storage_, deviceStorage_}; }
  // Host storage of a cpu tensor. Throws DisposedError naming `name` when disposed, DeviceError
  // for a cuda tensor (whose bytes the host reaches through readBytes / writeBytes).
  void* data(const char* name) const;
  // The storage in its device's memory: host for a cpu tensor, device memory of cuda:N (made
  // current) for a cuda one; DisposedError naming `name` when disposed.
  void* storageData(const char* name) const;
  // storageData for a writer outside this class (a kernel updating the tensor in place): a cuda
  // tensor's storage version is bumped (DeviceStorage::version).
  void* writableStorageData(const char* name);
  // The write counter of a cuda tensor's storage; null for a cpu tensor, whose view() lets
  // JavaScript write at any time.
  const uint64_t* version() const;
  // All bytes, host ← storage (a cuda tensor waits for its copy) and storage ← host.
  void readBytes(void* host, const char* name) const;
  void writeBytes(const void* host, const char* name);
  // All bytes from `source` (same dtype and size), on any pair of devices.
  void copyFrom(const NativeTensor& source, const char* name);

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
  Napi::Value zero(const Napi::CallbackInfo& info);
  Napi::Value write(const Napi::CallbackInfo& info);
  Napi::Value copyFromTensor(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);

  Napi::Value getDevice(const Napi::CallbackInfo& info);

  DType dtype_ = DType::F32;
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  int device_ = -1;
  std::shared_ptr<cpu::Storage> storage_;                  // cpu
  std::shared_ptr<cuda::DeviceStorage> deviceStorage_;     // cuda
  Napi::ObjectReference buffer_;  // weak: the external ArrayBuffer handed out by view(), if alive
};

Napi::Value liveBytes(const Napi::CallbackInfo& info);
// availableMemory(): bytes of host memory a new allocation may take (cpu/host_memory.h).
Napi::Value availableMemory(const Napi::CallbackInfo& info);

}  // namespace moekit::addon
