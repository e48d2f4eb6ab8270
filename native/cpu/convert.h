// Element-wise conversion between f32 and every storage dtype (DESIGN §2 Tensor.from/toArray),
// and the seeded normal fill behind Tensor.randn.
#pragma once

#include <cstdint>

#include "../core/dtype.h"

namespace moekit::cpu {

// dst[i] = encode(src[i]) in `to` (RNE; fp8 saturating per F1; i32/u8 truncate toward zero
// after the caller has checked the values are integers in range).
void encodeFromF32(const float* src, void* dst, int64_t n, DType to);
// dst[i] = decode(src[i]) as f32 for a float dtype `from`.
void decodeToF32(const void* src, float* dst, int64_t n, DType from);
// Conversion between any two dtypes through f32 (integers convert by value).
void convert(const void* src, DType from, void* dst, DType to, int64_t n);

// Normal(0, std²) samples from Philox-4x32-10: element i uses key (seed mod 2³², seed / 2³²),
// counter (⌊i/4⌋ mod 2³², ⌊i/4⌋ / 2³², 0, 0); words (0,1) and (2,3) feed two Box–Muller
// pairs, giving elements 4⌊i/4⌋ … 4⌊i/4⌋+3 as r₀cos θ₀, r₀sin θ₀, r₁cos θ₁, r₁sin θ₁.
void fillNormal(float* dst, int64_t n, uint64_t seed, float std);

}  // namespace moekit::cpu
