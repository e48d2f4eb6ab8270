// FP8 block quantisation on the device (DESIGN F2; kernels and thread mapping: quantize_fp8.cu).
// The per-block math is core/fp8_blocks.h's, the same functions cpu/fp8.cc calls, so the codes and
// scales equal cpu::quantizeFp8Blocks bit for bit (a block holding a NaN gives a NaN scale on both
// sides, whose payload may differ when the block holds several NaNs).
//
// Layouts (those of cpu/fp8.h):
//   x       [matrices, rows, cols] f32, row-major
//   codes   [matrices, rows, cols] u8 (e4m3 or e5m2 bits)
//   scales  [matrices, ceil(rows/blockRows), ceil(cols/128)] f32
// blockRows = 1 (activations: 1 × 128 blocks along K) or 128 (weights: 128 × 128 blocks of each
// expert's [N,K]); the last block of a row or column may be partial.
//
// Requirements (checked, moekit::Error naming the argument): sizes ≥ 0, blockRows 1 or 128,
// pointers not null when there is an element. Every pointer is DEVICE memory; work is enqueued on
// `stream`; a failed launch throws moekit::Error(Device). Any compute capability (no fp8 mma).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../core/fp8_blocks.h"

namespace moekit::cuda {

void quantizeFp8Blocks(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                       Fp8Format format, uint8_t* codes, float* scales, cudaStream_t stream);

// a [M,K] in 1 × 128 blocks: codes [M,K], scales [M, ceil(K/128)].
void quantizeActivationsFp8(const float* a, int64_t m, int64_t k, Fp8Format format, uint8_t* codes,
                            float* scales, cudaStream_t stream);

// w [G,N,K] in 128 × 128 blocks: codes [G,N,K], scales [G, ceil(N/128), ceil(K/128)].
void quantizeWeightsFp8(const float* w, int64_t groups, int64_t n, int64_t k, Fp8Format format,
                        uint8_t* codes, float* scales, cudaStream_t stream);

}  // namespace moekit::cuda
