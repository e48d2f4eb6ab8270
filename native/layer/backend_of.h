// A Backend made of one RouterStage and one ExpertStage implementation and its DeviceMemory: each
// backend (cpu, cuda) names its classes, whose constructors take (RouterSpec), (hidden,
// activation, groups, precision) and ().
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "stages.h"

namespace moekit {

template <class RouterT, class ExpertsT, class MemoryT>
class BackendOf final : public Backend {
 public:
  explicit BackendOf(const char* name) : name_(name) {}
  const char* name() const override { return name_; }
  const DeviceMemory& memory() const override { return memory_; }
  std::unique_ptr<RouterStage> makeRouter(const RouterSpec& spec) const override {
    return std::make_unique<RouterT>(spec);
  }
  std::unique_ptr<ExpertStage> makeExperts(int hidden, Activation activation,
                                           std::vector<ExpertGroup> groups,
                                           Precision precision) const override {
    return std::make_unique<ExpertsT>(hidden, activation, std::move(groups), precision);
  }

 private:
  const char* name_;
  MemoryT memory_;
};

}  // namespace moekit
