// The CUDA backend: the layer stages of native/layer/stages.h on the current CUDA device
// (cuda::Router, cuda::Experts over device memory, see their headers) and its DeviceMemory (memory.h).
#pragma once

#include "../layer/stages.h"

namespace moekit::cuda {

const Backend& cudaBackend();

}  // namespace moekit::cuda
