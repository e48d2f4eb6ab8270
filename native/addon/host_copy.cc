#include "host_copy.h"

#include "../core/errors.h"

namespace moekit::addon {

HostInput::HostInput(const NativeTensor& t, const char* name) {
  if (t.device() < 0) {
    data_ = t.data(name);
    return;
  }
  copy_.resize(t.bytes());
  t.readBytes(copy_.data(), name);
  data_ = copy_.data();
}

HostOutput::HostOutput(Napi::Env env, DType dtype, const std::vector<int64_t>& shape, int device) {
  tensor_ = NativeTensor::create(env, dtype, shape, &handle_, device);
  if (device < 0) {
    data_ = tensor_->data("result");
    return;
  }
  buffer_.resize(tensor_->bytes());
  data_ = buffer_.data();
}

void HostOutput::upload() {
  if (tensor_->device() >= 0 && !buffer_.empty()) tensor_->writeBytes(buffer_.data(), "result");
}

}  // namespace moekit::addon
