#include "cpu_backend.h"

#include "../layer/backend_of.h"
#include "experts.h"
#include "memory.h"
#include "router.h"

namespace moekit::cpu {

const Backend& cpuBackend() {
  static const BackendOf<Router, Experts, Memory> backend("cpu");
  return backend;
}

}  // namespace moekit::cpu
