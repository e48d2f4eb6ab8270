// Reading and validating JavaScript arguments in native code. The facade validates first, but a
// caller can reach the addon directly, so every binding checks again before touching memory.
// Each failure names the argument, what was expected and what was received.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../core/dtype.h"

namespace moekit::addon {

// A short description of a received value for error messages ("number 2.5", "string", …).
std::string describe(const Napi::Value& value);

// A shape: an array of at most kMaxRank non-negative integers whose product fits kMaxElements.
std::vector<int64_t> readShape(const Napi::Value& value, const char* name);
DType readDType(const Napi::Value& value, const char* name);
double readNumber(const Napi::Value& value, const char* name);
// A non-negative integer no larger than 2⁵³ − 1 (seeds, counts).
uint64_t readSafeUint(const Napi::Value& value, const char* name);

int64_t numelOf(const std::vector<int64_t>& shape);
std::string shapeString(const std::vector<int64_t>& shape);

}  // namespace moekit::addon
