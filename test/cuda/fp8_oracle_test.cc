// The FP8 codecs of core/minifloat.h (DESIGN F1) against a second, independent oracle: the host
// conversions of CUDA's cuda_fp8.h (__nv_cvt_float_to_fp8 with __NV_SATFINITE, round to nearest
// even; __nv_cvt_fp8_to_halfraw then __half2float). No GPU and no kernel: cuda_fp8.h's host path
// is plain C++ (through double), so g++ runs it. Each encode case compares 2²⁰ seeded random f32
// values (any bit pattern, the FP8 exponent range, the rounding midpoints between neighbouring
// codes and their f32 neighbours, f32 subnormals and NaN payloads) plus the edge values listed in
// edgeValues(); the codes must be identical. The decode cases compare all 256 codes (NaN codes
// must decode to NaN on both sides, everything else bit for bit, so −0 stays −0). Built with the
// emulator's harness (test/emu/harness.h, main.cc); run by test/fp8-oracle.test.ts.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/minifloat.h"
#include "harness.h"

namespace {

struct Format {
  const char* name;
  __nv_fp8_interpretation_t cuda;
  uint8_t (*encode)(float);
  float (*decode)(uint8_t);
  int mantissaBits, bias;
  float max, overflowMidpoint;  // largest finite value; max + half an ulp (saturates from there)
};

const Format kE4M3{"e4m3", __NV_E4M3, moekit::encodeE4M3, moekit::decodeE4M3, 3, 7, 448.0f, 464.0f};
const Format kE5M2{"e5m2", __NV_E5M2, moekit::encodeE5M2, moekit::decodeE5M2, 2, 15, 57344.0f, 61440.0f};

constexpr int kRandomValues = 1 << 20;

float fromBits(uint32_t bits) { return moekit::bitsFloat(bits); }
uint32_t toBits(float f) { return moekit::floatBits(f); }

std::string hex(uint32_t v, int digits) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%0*X", digits, v);
  return text;
}

bool isFinite(const Format& f, int code) { return std::isfinite(f.decode(uint8_t(code))); }

// Signed values worth pinning one by one: zeros, infinities, NaNs with payloads, the format's
// extremes and its saturation threshold with their f32 neighbours, the subnormal underflow
// midpoint, f32's own extremes.
std::vector<float> edgeValues(const Format& f) {
  const float minSubnormal = std::ldexp(1.0f, 1 - f.bias - f.mantissaBits);
  std::vector<float> magnitudes{0.0f,
                                std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::max(),
                                std::numeric_limits<float>::min(),
                                std::numeric_limits<float>::denorm_min(),
                                f.max,
                                f.overflowMidpoint,
                                minSubnormal,
                                minSubnormal / 2,
                                minSubnormal * 1.5f,
                                std::ldexp(1.0f, 1 - f.bias)};
  std::vector<float> values;
  for (float m : magnitudes)
    for (float v : {m, std::nextafter(m, 0.0f), std::nextafter(m, INFINITY)})
      for (float s : {1.0f, -1.0f}) values.push_back(s * v);
  for (uint32_t nan : {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x7FA5A5A5u})
    values.push_back(fromBits(nan));
  return values;
}

// kRandomValues values from a fixed seed, a quarter from each source.
std::vector<float> randomValues(const Format& f, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> values;
  values.reserve(kRandomValues);
  // Midpoints between neighbouring finite codes of the same sign (exact in f32).
  std::vector<float> midpoints;
  for (int code = 0; code < 0x7F; ++code)
    if (isFinite(f, code) && isFinite(f, code + 1))
      midpoints.push_back((f.decode(uint8_t(code)) + f.decode(uint8_t(code + 1))) / 2);
  const int lowExponent = 1 - f.bias - f.mantissaBits - 3, highExponent = int(std::log2(f.max)) + 3;
  for (int i = 0; i < kRandomValues; ++i) {
    const uint64_t r = rng();
    const uint32_t sign = uint32_t(r >> 63) << 31, mantissa = uint32_t(r >> 8) & 0x7FFFFFu;
    switch (i % 4) {
      case 0:  // any bit pattern: every f32 exponent, infinities and NaNs included
        values.push_back(fromBits(uint32_t(r)));
        break;
      case 1: {  // the FP8 range and a few binades past each end
        const int exponent = lowExponent + int((r >> 32) % uint64_t(highExponent - lowExponent + 1));
        values.push_back(fromBits(sign | uint32_t(exponent + 127) << 23 | mantissa));
        break;
      }
      case 2: {  // a rounding midpoint moved by −3 … +3 f32 ulps (0 = the tie itself)
        const float mid = midpoints[size_t((r >> 32) % midpoints.size())];
        const int32_t offset = int32_t((r >> 4) % 7) - 3;
        values.push_back(fromBits(sign | uint32_t(int32_t(toBits(mid)) + offset)));
        break;
      }
      default:  // f32 subnormals, or NaNs with a random payload
        values.push_back(fromBits(sign | ((r & 1) ? 0x7F800000u | (mantissa | 1u) : mantissa)));
        break;
    }
  }
  return values;
}

void expectEncodeAgrees(const Format& f, uint64_t seed) {
  std::vector<float> values = edgeValues(f);
  const std::vector<float> random = randomValues(f, seed);
  values.insert(values.end(), random.begin(), random.end());
  int64_t mismatches = 0;
  std::string first;
  for (float x : values) {
    const uint8_t ours = f.encode(x);
    const uint8_t theirs = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, f.cuda);
    if (ours == theirs) continue;
    if (mismatches++ < 8)
      first += " x = " + hex(toBits(x), 8) + " (" + std::to_string(x) + "): minifloat " + hex(ours, 2) +
               ", cuda_fp8.h " + hex(theirs, 2) + ";";
  }
  EMU_EXPECT(mismatches == 0, std::string(f.name) + ": " + std::to_string(mismatches) + " of " +
                                  std::to_string(values.size()) + " codes differ:" + first);
  std::printf("%s: %zu values, all codes identical\n", f.name, values.size());
}

void expectDecodeAgrees(const Format& f) {
  int nans = 0;
  for (int code = 0; code < 256; ++code) {
    const float ours = f.decode(uint8_t(code));
    const float theirs = __half2float(__half(__nv_cvt_fp8_to_halfraw(uint8_t(code), f.cuda)));
    const std::string at = std::string(f.name) + " code " + hex(uint32_t(code), 2);
    if (std::isnan(theirs)) {
      ++nans;
      EMU_EXPECT(std::isnan(ours), at + ": cuda_fp8.h decodes NaN, minifloat " + std::to_string(ours));
    } else {
      EMU_EXPECT(toBits(ours) == toBits(theirs),
                 at + ": minifloat " + std::to_string(ours) + ", cuda_fp8.h " + std::to_string(theirs));
    }
  }
  // F1 / EMULATOR.md: e4m3 has two NaN codes (0x7F, 0xFF), e5m2 six (0x7D–0x7F, 0xFD–0xFF).
  EMU_EXPECT(nans == (f.cuda == __NV_E4M3 ? 2 : 6), std::string(f.name) + ": " + std::to_string(nans) + " NaN codes");
}

EMU_CASE("e4m3 encode equals cuda_fp8.h __nv_cvt_float_to_fp8 (SATFINITE) on 2^20 random values and the edges") {
  expectEncodeAgrees(kE4M3, 4);
}

EMU_CASE("e5m2 encode equals cuda_fp8.h __nv_cvt_float_to_fp8 (SATFINITE) on 2^20 random values and the edges") {
  expectEncodeAgrees(kE5M2, 5);
}

EMU_CASE("e4m3 decode of all 256 codes equals cuda_fp8.h __nv_cvt_fp8_to_halfraw") { expectDecodeAgrees(kE4M3); }

EMU_CASE("e5m2 decode of all 256 codes equals cuda_fp8.h __nv_cvt_fp8_to_halfraw") { expectDecodeAgrees(kE5M2); }

}  // namespace
