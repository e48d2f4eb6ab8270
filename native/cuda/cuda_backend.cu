#include "cuda_backend.h"

#include "../layer/backend_of.h"
#include "experts.h"
#include "memory.h"
#include "router.h"

namespace moekit::cuda {

const Backend& cudaBackend() {
  static const BackendOf<Router, Experts, Memory> backend("cuda");
  return backend;
}

}  // namespace moekit::cuda
