// Host copies of tensor bytes, for the bindings whose math runs on the host (ops.cc's cpu ops,
// comm.cc's collectives) when their tensors may be on a cuda device (DESIGN §2b: they take cuda
// tensors and return tensors on the same device). A cpu tensor is used in place, zero-copy; a cuda
// tensor's bytes are downloaded once (HostInput, which waits for them) and a result on a cuda
// device is computed in a host buffer and uploaded once (HostOutput). Take them after every
// JavaScript value a binding reads: user code (a getter) may dispose a tensor, and the copies check
// liveness when they are made.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "tensor.h"

namespace moekit::addon {

// The bytes of an input tensor on the host: a cpu tensor's own storage, a cuda tensor's
// downloaded into a buffer owned here (one synchronisation).
class HostInput {
 public:
  HostInput(const NativeTensor& t, const char* name);
  HostInput(const HostInput&) = delete;
  HostInput& operator=(const HostInput&) = delete;

  const void* data() const { return data_; }
  const float* f32() const { return static_cast<const float*>(data_); }
  const int32_t* i32() const { return static_cast<const int32_t*>(data_); }

 private:
  std::vector<uint8_t> copy_;
  const void* data_ = nullptr;
};

// A new zero-filled result tensor on `device` (−1 cpu, N cuda:N) whose bytes are written on the
// host: a cpu tensor's storage directly, a cuda tensor's in a host buffer that upload() writes to
// the device (through pinned staging, no wait). Call upload() once the bytes are final.
class HostOutput {
 public:
  HostOutput(Napi::Env env, DType dtype, const std::vector<int64_t>& shape, int device);
  HostOutput(const HostOutput&) = delete;
  HostOutput& operator=(const HostOutput&) = delete;

  void* data() { return data_; }
  float* f32() { return static_cast<float*>(data_); }
  void upload();
  Napi::Object handle() const { return handle_; }

 private:
  Napi::Object handle_;
  NativeTensor* tensor_ = nullptr;
  std::vector<uint8_t> buffer_;
  void* data_ = nullptr;
};

// A new tensor on `device` holding `values` (numel of `shape` elements of dtype's C type).
template <typename T>
Napi::Object tensorOf(Napi::Env env, DType dtype, const std::vector<int64_t>& shape, const std::vector<T>& values,
                      int device) {
  Napi::Object handle;
  NativeTensor* tensor = NativeTensor::create(env, dtype, shape, &handle, device);
  if (!values.empty()) tensor->writeBytes(values.data(), "result");
  return handle;
}

}  // namespace moekit::addon
