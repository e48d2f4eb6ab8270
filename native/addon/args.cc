#include "args.h"

#include <cmath>
#include <cstdio>

#include "../core/errors.h"
#include "../core/shape.h"

namespace moekit::addon {

namespace {

std::string formatNumber(double d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", d);
  return text;
}

}  // namespace

std::string describe(const Napi::Value& value) {
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number " + formatNumber(value.As<Napi::Number>().DoubleValue());
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_function: return "function";
    case napi_bigint: return "bigint";
    default: return value.IsArray() ? "array" : value.IsTypedArray() ? "typed array" : "object";
  }
}

std::vector<int64_t> readShape(const Napi::Value& value, const char* name) {
  if (!value.IsArray()) {
    throw Error(ErrorKind::Shape, std::string(name) + " must be an array of non-negative integers, got " + describe(value));
  }
  Napi::Array array = value.As<Napi::Array>();
  if (array.Length() > uint32_t(kMaxRank)) {
    throw Error(ErrorKind::Shape, std::string(name) + " must have at most " + std::to_string(kMaxRank) +
                                      " dimensions, got " + std::to_string(array.Length()));
  }
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value dim = array.Get(i);
    const double d = dim.IsNumber() ? dim.As<Napi::Number>().DoubleValue() : -1.0;
    if (!dim.IsNumber() || !std::isfinite(d) || d < 0 || std::floor(d) != d) {
      throw Error(ErrorKind::Shape, std::string(name) + "[" + std::to_string(i) +
                                        "] must be a non-negative integer, got " + describe(dim));
    }
    if (d > double(kMaxElements)) {
      throw Error(ErrorKind::Shape, std::string(name) + "[" + std::to_string(i) + "] = " + formatNumber(d) +
                                        " exceeds the largest tensor (2^31-1 elements)");
    }
    shape.push_back(int64_t(d));
  }
  if (checkedNumel(shape.data(), int(shape.size())) < 0) {
    throw Error(ErrorKind::Shape, std::string(name) + " " + shapeString(shape) +
                                      " has more than 2^31-1 elements, the largest tensor moekit holds");
  }
  return shape;
}

DType readDType(const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) throw Error(ErrorKind::DType, std::string(name) + " must be a dtype code, got " + describe(value));
  const double code = value.As<Napi::Number>().DoubleValue();
  if (std::floor(code) != code || !isValidDType(int32_t(code)) || code < 0 || code >= kDTypeCount) {
    throw Error(ErrorKind::DType, std::string(name) + " must be a dtype code in [0, " + std::to_string(kDTypeCount) +
                                      "), got " + describe(value));
  }
  return DType(int32_t(code));
}

double readNumber(const Napi::Value& value, const char* name) {
  if (!value.IsNumber() || !std::isfinite(value.As<Napi::Number>().DoubleValue())) {
    throw Error(ErrorKind::Argument, std::string(name) + " must be a finite number, got " + describe(value));
  }
  return value.As<Napi::Number>().DoubleValue();
}

uint64_t readSafeUint(const Napi::Value& value, const char* name) {
  const double d = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1.0;
  if (!value.IsNumber() || !std::isfinite(d) || d < 0 || std::floor(d) != d || d > 9007199254740991.0) {
    throw Error(ErrorKind::Argument, std::string(name) + " must be an integer in [0, 2^53-1], got " + describe(value));
  }
  return uint64_t(d);
}

int64_t numelOf(const std::vector<int64_t>& shape) { return checkedNumel(shape.data(), int(shape.size())); }

std::string shapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace moekit::addon
