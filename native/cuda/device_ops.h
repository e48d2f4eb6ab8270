// Device entry points of the CUDA kernels the ops bindings call (native/addon/ops.cc: adamwStep,
// quantizeFp8, groupedGemmFp8): every tensor pointer is DEVICE memory of the current device, the
// work is enqueued on that device's stream (staging.h deviceStream) and nothing waits; scratch
// comes from the device's pool (StreamBuffer). Only small host tables (group sizes, row offsets)
// are uploaded. This header needs no CUDA toolkit: the addon includes it.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/fp8_blocks.h"
#include "../cpu/adamw.h"

namespace moekit::cuda {

// cuda::adamwStep (adamw.h) on param, grad, m, v [count]; param, m, v updated in place.
void adamwStepOnDevice(float* param, const float* grad, float* m, float* v, int64_t count,
                       const cpu::AdamWConfig& config, int64_t step);

// cuda::groupedGemmFp8 (grouped_gemm_fp8.h) on operands in ops.groupedGemmFp8's contiguous layout —
// a [M,K] e4m3 codes with aScales [M, ⌈K/128⌉], b [G,N,K] with bScales [G, ⌈N/128⌉, ⌈K/128⌉],
// groupSizes [G] (host) summing to M — into out [M,N]. The operands are laid out for the kernel in
// device scratch first (a's rows padded per group to kFp8GemmRowAlign, a and b's K to a multiple of
// 16 with zero codes, which add exact zeros) and out is compacted from the padded result, so out
// equals cpu::groupedGemmFp8Reference within the bound grouped_gemm_fp8.h states (bit for bit when
// every partial sum is exact). Throws Error(Device) on a device without the fp8 mma (below compute
// capability 8.9), Error(Shape) when the padded rows exceed 2³¹ − 1.
void groupedGemmFp8OnDevice(const uint8_t* a, const float* aScales, const uint8_t* b, const float* bScales,
                            const std::vector<int32_t>& groupSizes, int n, int k, float* out);

// cuda::quantizeFp8Blocks (quantize_fp8.h) on x [matrices, rows, cols] into codes and scales (the
// layouts of cpu::quantizeFp8Blocks, equal to it bit for bit).
void quantizeFp8OnDevice(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                         Fp8Format format, uint8_t* codes, float* scales);

}  // namespace moekit::cuda
