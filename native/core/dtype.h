// Element types of a moekit tensor (DESIGN §2). The numeric codes are the ABI between the
// TypeScript facade and the addon: lib/dtype.ts lists them in the same order.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moekit {

enum class DType : int32_t { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, U8 = 4, E4M3 = 5, E5M2 = 6 };

constexpr int kDTypeCount = 7;

constexpr bool isValidDType(int32_t code) { return code >= 0 && code < kDTypeCount; }

constexpr size_t elementSize(DType t) {
  switch (t) {
    case DType::F32:
    case DType::I32: return 4;
    case DType::BF16:
    case DType::F16: return 2;
    default: return 1;
  }
}

constexpr const char* dtypeName(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
    case DType::E4M3: return "e4m3";
    case DType::E5M2: return "e5m2";
  }
  return "?";
}

// Float dtypes decode to f32 in toArray() and accept f32 data in from().
constexpr bool isFloat(DType t) { return t != DType::I32 && t != DType::U8; }

}  // namespace moekit
