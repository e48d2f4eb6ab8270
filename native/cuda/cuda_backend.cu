#include "cuda_backend.h"

#include "experts.h"
#include "router.h"

namespace moekit::cuda {

namespace {

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  std::unique_ptr<RouterStage> makeRouter(const RouterSpec& spec) const override {
    return std::make_unique<Router>(spec);
  }
  std::unique_ptr<ExpertStage> makeExperts(int hidden, Activation activation,
                                           std::vector<ExpertGroup> groups) const override {
    return std::make_unique<Experts>(hidden, activation, std::move(groups));
  }
};

}  // namespace

const Backend& cudaBackend() {
  static const CudaBackend backend;
  return backend;
}

}  // namespace moekit::cuda
