// Host-staged entry points of the CUDA kernels the bindings call outside the layer (the tensors of
// this version live in host memory, see router.h): each uploads its inputs, runs the kernel on a
// stream of its own, downloads what it updated and synchronises before returning.
#pragma once

#include <cstdint>

#include "../core/fp8_blocks.h"
#include "../cpu/adamw.h"

namespace moekit::cuda {

// cuda::adamwStep (adamw.h) on HOST param, grad, m, v [count]; param, m, v updated in place.
void adamwStepStaged(float* param, const float* grad, float* m, float* v, int64_t count,
                     const cpu::AdamWConfig& config, int64_t step);

// cuda::quantizeFp8Blocks (quantize_fp8.h) on HOST x [matrices, rows, cols]: codes and scales
// written to HOST memory (the layouts of cpu::quantizeFp8Blocks, equal to it bit for bit).
void quantizeFp8Staged(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                       Fp8Format format, uint8_t* codes, float* scales);

}  // namespace moekit::cuda
