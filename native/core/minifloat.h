// Encoding and decoding of the narrow float formats moekit stores: f16 (IEEE binary16), bf16,
// and the two FP8 formats of DESIGN F1. All rounding is round-to-nearest-even.
//
// A format with M mantissa bits and exponent bias B represents, for code (exp field e, mantissa m),
//   e = 0: m · 2^(1−B−M)            (subnormal)
//   e > 0: (2^M + m) · 2^(e−B−M)    (normal)
// Encoding a finite magnitude a picks the exponent E = max(⌊log2 a⌋, 1−B), rounds a · 2^(M−E) to
// the nearest even integer q (exact in fp32 arithmetic: the scaling is by a power of two) and
// emits q directly when q < 2^M (subnormal) or ((E+B) << M) | (q − 2^M) otherwise; a carry to
// q = 2^(M+1) moves to the next exponent.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "hd.h"

namespace moekit {

MOEKIT_HD inline uint32_t floatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

MOEKIT_HD inline float bitsFloat(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// Code of a finite, non-negative magnitude that the caller knows does not overflow the format.
template <int M, int B>
MOEKIT_HD inline uint32_t encodeMagnitude(float a) {
  if (a == 0.0f) return 0;
  int e2;
  std::frexp(a, &e2);
  int exponent = e2 - 1;
  if (exponent < 1 - B) exponent = 1 - B;
  uint32_t q = uint32_t(std::rint(std::ldexp(a, M - exponent)));
  if (q == (2u << M)) {
    ++exponent;
    q = 1u << M;
  }
  if (q < (1u << M)) return q;
  return (uint32_t(exponent + B) << M) | (q - (1u << M));
}

template <int M, int B>
MOEKIT_HD inline float decodeFinite(uint32_t exponentField, uint32_t mantissa) {
  if (exponentField == 0) return std::ldexp(float(mantissa), 1 - B - M);
  return std::ldexp(float((1u << M) + mantissa), int(exponentField) - B - M);
}

// ---- FP8 (DESIGN F1): saturating, NaN → 0x7F. ----

// e4m3: bias 7, max 448 (0x7E), NaN 0x7F/0xFF, no infinity.
MOEKIT_HD inline uint8_t encodeE4M3(float f) {
  if (std::isnan(f)) return 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  const float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7E;
  return sign | uint8_t(encodeMagnitude<3, 7>(a));
}

MOEKIT_HD inline float decodeE4M3(uint8_t code) {
  const uint32_t e = (code >> 3) & 0xF, m = code & 0x7;
  if (e == 0xF && m == 0x7) return NAN;
  const float a = decodeFinite<3, 7>(e, m);
  return (code & 0x80) ? -a : a;
}

// e5m2: bias 15, max 57344 (0x7B); infinities saturate to the max, NaN → 0x7F.
MOEKIT_HD inline uint8_t encodeE5M2(float f) {
  if (std::isnan(f)) return 0x7F;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  const float a = std::fabs(f);
  if (a >= 57344.0f) return sign | 0x7B;
  return sign | uint8_t(encodeMagnitude<2, 15>(a));
}

MOEKIT_HD inline float decodeE5M2(uint8_t code) {
  const uint32_t e = (code >> 2) & 0x1F, m = code & 0x3;
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  if (e == 0x1F) return m == 0 ? sign * INFINITY : NAN;
  return sign * decodeFinite<2, 15>(e, m);
}

// ---- f16 (IEEE binary16): overflow rounds to infinity as IEEE requires. ----

MOEKIT_HD inline uint16_t encodeF16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0x0000;
  if (std::isnan(f)) return sign | 0x7E00;
  const float a = std::fabs(f);
  if (a >= 65520.0f) return sign | 0x7C00;  // 65520 is the midpoint past the max 65504
  return sign | uint16_t(encodeMagnitude<10, 15>(a));
}

MOEKIT_HD inline float decodeF16(uint16_t code) {
  const uint32_t e = (code >> 10) & 0x1F, m = code & 0x3FF;
  const float sign = (code & 0x8000) ? -1.0f : 1.0f;
  if (e == 0x1F) return m == 0 ? sign * INFINITY : NAN;
  return sign * decodeFinite<10, 15>(e, m);
}

// ---- bf16: the high half of an f32, rounded to nearest even on the dropped 16 bits. ----

MOEKIT_HD inline uint16_t encodeBF16(float f) {
  const uint32_t u = floatBits(f);
  if (std::isnan(f)) return uint16_t((u >> 16) | 0x0040);  // keep it a quiet NaN
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

MOEKIT_HD inline float decodeBF16(uint16_t code) { return bitsFloat(uint32_t(code) << 16); }

}  // namespace moekit
