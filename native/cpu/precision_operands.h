// The low-precision operands of the CPU experts (layer/stage_types.h Precision): copies of f32
// matrices holding the values a bf16 or a block-quantised e4m3 GEMM operand stands for
// (core/precision.h), so the f32 grouped GEMMs (grouped_gemm.h) compute the mode's products
// exactly (a product of two bf16 or two e4m3·scale values is exact in f32) with f32 accumulation.
#pragma once

#include <cstdint>

namespace moekit::cpu {

// out[i] = roundBf16(in[i]) for n elements; out may be in.
void roundBf16(const float* in, int64_t n, float* out);

// x [matrices, rows, cols] → out (same shape, may be x): each element replaced by
// decode(code)·scale of its F2 block (blockRows × 128; 1 for activations, 128 for weights), e4m3.
void fp8RoundTrip(const float* x, int64_t matrices, int64_t rows, int64_t cols, int blockRows, float* out);

}  // namespace moekit::cpu
