// The low-precision operands of cuda::Experts (layer/stage_types.h Precision; the CPU side is
// cpu/precision_operands.h): f32 buffers holding the values a bf16 or a block-quantised e4m3 GEMM
// operand stands for (core/precision.h), which the fp32 grouped GEMMs (grouped_gemm.h) then read.
// Every pointer is DEVICE memory; work is enqueued on `stream`; a failed launch throws
// moekit::Error(Device). Sizes are the caller's to validate (cuda::Experts does).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.h"
#include "device_buffer.h"

namespace moekit::cuda {

// out[i] = roundBf16(in[i]) for n elements; out may be in.
void roundBf16(const float* in, int64_t n, float* out, cudaStream_t stream);

// x [matrices, rows, cols] → out (same shape, must not be x): each element replaced by
// decode(code)·scale of its F2 e4m3 block (blockRows × 128: 1 for activations, 128 for weights);
// the scales come from quantizeFp8Blocks (quantize_fp8.h) into `codes` and `scales` (grown).
void fp8RoundTrip(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                  DeviceBuffer<uint8_t>& codes, DeviceBuffer<float>& scales, float* out,
                  cudaStream_t stream);

}  // namespace moekit::cuda
