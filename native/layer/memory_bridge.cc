#include "memory_bridge.h"

namespace moekit {

DeviceSideExperts::DeviceSideExperts(const DeviceMemory& memory, int hidden, std::unique_ptr<ExpertStage> host)
    : memory_(memory), H_(hidden), host_(std::move(host)) {}

void DeviceSideExperts::forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
                                const float* weight, float* y) {
  const size_t size = size_t(T) * H_, bytes = size * sizeof(float);
  x_.resize(size);
  y_.resize(size);
  memory_.toHost(x_.data(), x, bytes);
  memory_.toHost(y_.data(), y, bytes);
  host_->forward(x_.data(), T, n, token, expert, weight, y_.data());
  memory_.fromHost(y, y_.data(), bytes);
  T_ = T;
  n_ = n;
}

void DeviceSideExperts::backward(const float* dy, float* dx, float* dWeight) {
  const size_t size = size_t(T_) * H_, bytes = size * sizeof(float);
  dy_.resize(size);
  memory_.toHost(dy_.data(), dy, bytes);
  if (dx) {
    dx_.resize(size);
    memory_.toHost(dx_.data(), dx, bytes);
  }
  dWeight_.resize(size_t(n_));
  host_->backward(dy_.data(), dx ? dx_.data() : nullptr, dWeight ? dWeight_.data() : nullptr);
  if (dx) memory_.fromHost(dx, dx_.data(), bytes);
  if (dWeight) memory_.fromHost(dWeight, dWeight_.data(), size_t(n_) * sizeof(float));
}

HostSideExperts::HostSideExperts(const DeviceMemory& memory, int hidden, std::unique_ptr<ExpertStage> device)
    : memory_(memory), H_(hidden), device_(std::move(device)) {}

float* HostSideExperts::reserve(std::shared_ptr<void>& buffer, size_t& capacity, size_t floats) {
  if (floats > capacity) {
    buffer = memory_.allocate(floats * sizeof(float));
    capacity = floats;
  }
  return static_cast<float*>(buffer.get());
}

void HostSideExperts::forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
                              const float* weight, float* y) {
  const size_t size = size_t(T) * H_, bytes = size * sizeof(float);
  float* dX = reserve(x_, xCapacity_, size);
  float* dY = reserve(y_, yCapacity_, size);
  memory_.fromHost(dX, x, bytes);
  memory_.fromHost(dY, y, bytes);
  device_->forward(dX, T, n, token, expert, weight, dY);
  memory_.toHost(y, dY, bytes);
  T_ = T;
  n_ = n;
}

// Reuses the forward's scratch: x_ takes dy, y_ takes dx.
void HostSideExperts::backward(const float* dy, float* dx, float* dWeight) {
  const size_t size = size_t(T_) * H_, bytes = size * sizeof(float);
  float* dDy = reserve(x_, xCapacity_, size);
  float* dDx = reserve(y_, yCapacity_, size);
  memory_.fromHost(dDy, dy, bytes);
  if (dx) memory_.fromHost(dDx, dx, bytes);
  float* dDWeight = dWeight ? reserve(dWeight_, dWeightCapacity_, size_t(n_)) : nullptr;
  device_->backward(dDy, dx ? dDx : nullptr, dDWeight);
  if (dx) memory_.toHost(dx, dDx, bytes);
  if (dWeight) memory_.toHost(dWeight, dDWeight, size_t(n_) * sizeof(float));
}

}  // namespace moekit
