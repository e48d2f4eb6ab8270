// ExpertStages that move a stage between host memory and a backend's device memory
// (DeviceMemory, stages.h): expert parallelism (expert_parallel.h) exchanges rows through a
// communicator on host memory, so on a device backend the layer runs
//
//   DeviceSide(ExpertParallel(local = HostSide(the backend's stage)))
//
// DeviceSide presents a device-memory stage over a host-memory one: x, y, dy and dx are copied
// down before and (y, dx) up after. HostSide presents a host-memory stage over a device-memory
// one: the rows it is given go up into device scratch kept across calls, the outputs come down.
// The assignment lists are host data on both sides (stages.h); dWeight follows x.
#pragma once

#include <memory>
#include <vector>

#include "stages.h"

namespace moekit {

class DeviceSideExperts final : public ExpertStage {
 public:
  DeviceSideExperts(const DeviceMemory& memory, int hidden, std::unique_ptr<ExpertStage> host);
  void forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert, const float* weight,
               float* y) override;
  void backward(const float* dy, float* dx, float* dWeight) override;
  int64_t flops(int expert) const override { return host_->flops(expert); }
  ExpertStage& host() { return *host_; }

 private:
  const DeviceMemory& memory_;
  int H_;
  std::unique_ptr<ExpertStage> host_;
  int T_ = 0, n_ = 0;
  std::vector<float> x_, y_, dy_, dx_, dWeight_;
};

class HostSideExperts final : public ExpertStage {
 public:
  HostSideExperts(const DeviceMemory& memory, int hidden, std::unique_ptr<ExpertStage> device);
  void forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert, const float* weight,
               float* y) override;
  void backward(const float* dy, float* dx, float* dWeight) override;
  int64_t flops(int expert) const override { return device_->flops(expert); }

 private:
  // Device scratch of `floats` floats, kept (and grown) across calls.
  float* reserve(std::shared_ptr<void>& buffer, size_t& capacity, size_t floats);

  const DeviceMemory& memory_;
  int H_;
  std::unique_ptr<ExpertStage> device_;
  int T_ = 0, n_ = 0;
  std::shared_ptr<void> x_, y_, dWeight_;
  size_t xCapacity_ = 0, yCapacity_ = 0, dWeightCapacity_ = 0;
};

}  // namespace moekit
