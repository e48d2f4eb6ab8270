// Host-staged entry points of the CUDA kernels the bindings call outside the layer (the tensors of
// this version live in host memory, see router.h): each uploads its inputs, runs the kernel on a
// stream of its own, downloads what it updated and synchronises before returning.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/fp8_blocks.h"
#include "../cpu/adamw.h"

namespace moekit::cuda {

// cuda::adamwStep (adamw.h) on HOST param, grad, m, v [count]; param, m, v updated in place.
void adamwStepStaged(float* param, const float* grad, float* m, float* v, int64_t count,
                     const cpu::AdamWConfig& config, int64_t step);

// cuda::groupedGemmFp8 (grouped_gemm_fp8.h) on HOST operands in ops.groupedGemmFp8's contiguous
// layout — a [M,K] e4m3 codes with aScales [M, ⌈K/128⌉], b [G,N,K] with bScales
// [G, ⌈N/128⌉, ⌈K/128⌉], groupSizes [G] summing to M — into HOST out [M,N]. The operands are laid out
// for the kernel on the way up (rows padded per group to kFp8GemmRowAlign, K to a multiple of 16
// with zero codes, which add exact zeros), so out equals cpu::groupedGemmFp8Reference within the
// bound grouped_gemm_fp8.h states (bit for bit when every partial sum is exact). Throws
// Error(Device) on a device without the fp8 mma (below compute capability 8.9).
void groupedGemmFp8Staged(const uint8_t* a, const float* aScales, const uint8_t* b, const float* bScales,
                          const std::vector<int32_t>& groupSizes, int n, int k, float* out);

// cuda::quantizeFp8Blocks (quantize_fp8.h) on HOST x [matrices, rows, cols]: codes and scales
// written to HOST memory (the layouts of cpu::quantizeFp8Blocks, equal to it bit for bit).
void quantizeFp8Staged(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                       Fp8Format format, uint8_t* codes, float* scales);

}  // namespace moekit::cuda
