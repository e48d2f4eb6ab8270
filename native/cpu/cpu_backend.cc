#include "cpu_backend.h"

#include "experts.h"
#include "router.h"

namespace moekit::cpu {

namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  std::unique_ptr<RouterStage> makeRouter(const RouterSpec& spec) const override {
    return std::make_unique<Router>(spec);
  }
  std::unique_ptr<ExpertStage> makeExperts(int hidden, Activation activation,
                                           std::vector<ExpertGroup> groups) const override {
    return std::make_unique<Experts>(hidden, activation, std::move(groups));
  }
};

}  // namespace

const Backend& cpuBackend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace moekit::cpu
