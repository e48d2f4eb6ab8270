// The operand rounding of the layer's precision modes (layer/stage_types.h Precision), shared by
// the CPU experts (cpu/precision_operands.cc) and the CUDA conversion kernels
// (cuda/precision_operands.cu), so that both feed their GEMMs the same values.
//
//   bf16   roundBf16(v) = decodeBF16(encodeBF16(v))   RNE to 8 mantissa bits, NaN kept
//   fp8    fp8Value(code, scale) = decode(code) · scale, code = fp8Quantize(v, scale) (F2)
//          the value an e4m3 block-quantised operand stands for (core/fp8_blocks.h, F2): a GEMM
//          over these values in f32 is F3's Σ_kb sa·sb·Σ_k qa·qb up to the f32 rounding of each
//          q·s (one rounding, ≤ 2⁻²⁴ relative) and the order of the f32 sum.
#pragma once

#include "fp8_blocks.h"
#include "hd.h"
#include "minifloat.h"

namespace moekit {

MOEKIT_HD inline float roundBf16(float v) { return decodeBF16(encodeBF16(v)); }

MOEKIT_HD inline float fp8Value(uint8_t code, float scale) { return fp8Decode(code, Fp8Format::E4M3) * scale; }

}  // namespace moekit
