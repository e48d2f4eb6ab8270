#include "convert.h"

#include <cmath>
#include <vector>

#include "../core/minifloat.h"
#include "../core/philox.h"

namespace moekit::cpu {

void encodeFromF32(const float* src, void* dst, int64_t n, DType to) {
  switch (to) {
    case DType::F32: {
      float* d = static_cast<float*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = src[i];
      return;
    }
    case DType::BF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = encodeBF16(src[i]);
      return;
    }
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = encodeF16(src[i]);
      return;
    }
    case DType::E4M3: {
      uint8_t* d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = encodeE4M3(src[i]);
      return;
    }
    case DType::E5M2: {
      uint8_t* d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = encodeE5M2(src[i]);
      return;
    }
    case DType::I32: {
      int32_t* d = static_cast<int32_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = int32_t(src[i]);
      return;
    }
    case DType::U8: {
      uint8_t* d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = uint8_t(src[i]);
      return;
    }
  }
}

void decodeToF32(const void* src, float* dst, int64_t n, DType from) {
  switch (from) {
    case DType::F32: {
      const float* s = static_cast<const float*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = s[i];
      return;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = decodeBF16(s[i]);
      return;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = decodeF16(s[i]);
      return;
    }
    case DType::E4M3: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = decodeE4M3(s[i]);
      return;
    }
    case DType::E5M2: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = decodeE5M2(s[i]);
      return;
    }
    case DType::I32: {
      const int32_t* s = static_cast<const int32_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]);
      return;
    }
    case DType::U8: {
      const uint8_t* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]);
      return;
    }
  }
}

void convert(const void* src, DType from, void* dst, DType to, int64_t n) {
  if (from == DType::I32 && to == DType::U8) {
    const int32_t* s = static_cast<const int32_t*>(src);
    uint8_t* d = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = uint8_t(s[i] < 0 ? 0 : s[i] > 255 ? 255 : s[i]);
    return;
  }
  if (from == DType::I32 && to == DType::I32) {
    const int32_t* s = static_cast<const int32_t*>(src);
    int32_t* d = static_cast<int32_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = s[i];
    return;
  }
  constexpr int64_t kChunk = 4096;
  std::vector<float> buffer(size_t(n < kChunk ? n : kChunk));
  const size_t inSize = elementSize(from), outSize = elementSize(to);
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t len = n - start < kChunk ? n - start : kChunk;
    decodeToF32(static_cast<const uint8_t*>(src) + start * inSize, buffer.data(), len, from);
    if (to == DType::I32 || to == DType::U8) {
      const float hi = to == DType::U8 ? 255.0f : 2147483520.0f;  // largest f32 below 2³¹
      const float lo = to == DType::U8 ? 0.0f : -2147483648.0f;
      for (int64_t i = 0; i < len; ++i) {
        const float v = std::isnan(buffer[i]) ? 0.0f : buffer[i];
        buffer[i] = v < lo ? lo : v > hi ? hi : v;
      }
    }
    encodeFromF32(buffer.data(), static_cast<uint8_t*>(dst) + start * outSize, len, to);
  }
}

void fillNormal(float* dst, int64_t n, uint64_t seed, float std) {
  constexpr double kTwoPi = 6.283185307179586476925;
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int64_t block = 0; block * 4 < n; ++block) {
    const Philox4 r = philox4x32_10(Philox4{{uint32_t(block), uint32_t(uint64_t(block) >> 32), 0, 0}}, k0, k1);
    double z[4];
    for (int pair = 0; pair < 2; ++pair) {
      const double radius = std::sqrt(-2.0 * std::log(philoxUniform(r.w[2 * pair])));
      const double theta = kTwoPi * philoxUniform(r.w[2 * pair + 1]);
      z[2 * pair] = radius * std::cos(theta);
      z[2 * pair + 1] = radius * std::sin(theta);
    }
    for (int j = 0; j < 4 && block * 4 + j < n; ++j) dst[block * 4 + j] = float(z[j] * std);
  }
}

}  // namespace moekit::cpu
