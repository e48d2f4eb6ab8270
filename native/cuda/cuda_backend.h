// The CUDA backend: the layer stages of native/layer/stages.h on the current CUDA device
// (cuda::Router, cuda::Experts; host-staged in this version, see their headers).
#pragma once

#include "../layer/stages.h"

namespace moekit::cuda {

const Backend& cudaBackend();

}  // namespace moekit::cuda
