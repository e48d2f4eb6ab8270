// The CPU backend: the layer stages of native/layer/stages.h on host memory.
#pragma once

#include "../layer/stages.h"

namespace moekit::cpu {

const Backend& cpuBackend();

}  // namespace moekit::cpu
