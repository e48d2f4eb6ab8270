// A Backend made of one RouterStage and one ExpertStage implementation: each backend (cpu, cuda)
// names its two stage classes, whose constructors take (RouterSpec) and (hidden, activation,
// groups, precision).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "stages.h"

namespace moekit {

template <class RouterT, class ExpertsT>
class BackendOf final : public Backend {
 public:
  explicit BackendOf(const char* name) : name_(name) {}
  const char* name() const override { return name_; }
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
};

}  // namespace moekit
