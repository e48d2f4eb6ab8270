// FP8 block quantisation (DESIGN F2): the per-block math that the CPU reference (cpu/fp8.cc) and
// the CUDA quantisation kernels both compute, so that they produce the same codes and scales.
//
// A matrix [R,C] is cut into blocks of blockRows × 128 (activations 1 × 128 along K, weights
// 128 × 128 of each expert's [N,K]). The last block of a row or column may be partial when R or C
// is not a multiple of the block: it covers the elements that exist, and the scale grid is
// [ceil(R/blockRows), ceil(C/128)]. For one block B:
//   amax  = max over B of |x|          (NaN is sticky: a block holding a NaN gets amax NaN)
//   scale = amax / fmax in fp32         fmax = 448 (e4m3) or 57344 (e5m2), the format's largest
//                                       finite value, so the block's amax maps onto it
//   scale = 1 when that quotient is 0   (amax = 0, F2; also a non-zero amax below fmax·2⁻¹⁵⁰, whose
//                                       quotient underflows and would otherwise divide by 0)
//   code  = encode(x / scale)           the quotient computed in fp32 exactly as written (IEEE
//                                       division: the CUDA side must not use fast-math), then
//                                       minifloat.h's saturating RNE encoder (F1). x / scale can
//                                       exceed fmax by an ulp when amax / fmax rounded down; it
//                                       saturates to fmax.
// A NaN amax gives a NaN scale and every code of the block 0x7F; an infinite amax gives an
// infinite scale, finite elements code ±0 and the infinite ones NaN (0x7F): both visible.
// Dequantised: x ≈ decode(code) · scale.
#pragma once

#include <cmath>
#include <cstdint>

#include "hd.h"
#include "minifloat.h"

namespace moekit {

enum class Fp8Format { E4M3, E5M2 };

// Block edge along K (both layouts) and along N for weights.
constexpr int kFp8Block = 128;

// Blocks covering n elements, the last one partial when n is not a multiple of `block`.
MOEKIT_HD inline int64_t fp8BlockCount(int64_t n, int64_t block = kFp8Block) { return (n + block - 1) / block; }

// The format's largest finite value.
MOEKIT_HD inline float fp8Max(Fp8Format format) { return format == Fp8Format::E4M3 ? 448.0f : 57344.0f; }

// Running amax: a is |x| of an element or a partial amax; a NaN, once seen, stays.
MOEKIT_HD inline float fp8AmaxMerge(float amax, float a) { return (a > amax || std::isnan(a)) ? a : amax; }

MOEKIT_HD inline float fp8BlockScale(float amax, Fp8Format format) {
  const float scale = amax / fp8Max(format);
  return scale == 0.0f ? 1.0f : scale;
}

MOEKIT_HD inline uint8_t fp8Encode(float v, Fp8Format format) {
  return format == Fp8Format::E4M3 ? encodeE4M3(v) : encodeE5M2(v);
}

MOEKIT_HD inline float fp8Decode(uint8_t code, Fp8Format format) {
  return format == Fp8Format::E4M3 ? decodeE4M3(code) : decodeE5M2(code);
}

// The code of element x in a block of scale `scale`.
MOEKIT_HD inline uint8_t fp8Quantize(float x, float scale, Fp8Format format) { return fp8Encode(x / scale, format); }

}  // namespace moekit
