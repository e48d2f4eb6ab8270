#include "router_spec.h"

#include <cmath>
#include <string>

#include "../core/errors.h"
#include "args.h"

namespace moekit::addon {

double readField(const Napi::Object& obj, const char* key, const std::string& where) {
  Napi::Value value = obj.Get(key);
  if (!value.IsNumber() || !std::isfinite(value.As<Napi::Number>().DoubleValue())) {
    throw Error(ErrorKind::Config, where + "." + key + " must be a finite number, got " + describe(value));
  }
  return value.As<Napi::Number>().DoubleValue();
}

int readIntField(const Napi::Object& obj, const char* key, int lo, int hi, const std::string& where) {
  const double d = readField(obj, key, where);
  if (std::floor(d) != d || d < lo || d > hi) {
    throw Error(ErrorKind::Config, where + "." + key + " must be an integer in [" + std::to_string(lo) + ", " +
                                       std::to_string(hi) + "], got " + describe(obj.Get(key)));
  }
  return int(d);
}

namespace {

bool readBoolField(const Napi::Object& obj, const char* key, const std::string& where) {
  Napi::Value value = obj.Get(key);
  if (!value.IsBoolean()) throw Error(ErrorKind::Config, where + "." + key + " must be a boolean, got " + describe(value));
  return value.As<Napi::Boolean>().Value();
}

Napi::Object readObjectField(const Napi::Object& obj, const char* key, const std::string& where) {
  Napi::Value value = obj.Get(key);
  if (!value.IsObject()) throw Error(ErrorKind::Config, where + "." + key + " must be an object, got " + describe(value));
  return value.As<Napi::Object>();
}

}  // namespace

RouterSpec readRouterSpec(const Napi::Object& obj) {
  constexpr int kMax = 1 << 30;
  RouterSpec spec;
  spec.hidden = readIntField(obj, "hidden", 1, kMax, "spec");
  Napi::Value groups = obj.Get("groups");
  if (!groups.IsArray() || groups.As<Napi::Array>().Length() == 0) {
    throw Error(ErrorKind::Config, "spec.groups must be a non-empty array, got " + describe(groups));
  }
  Napi::Array list = groups.As<Napi::Array>();
  for (uint32_t g = 0; g < list.Length(); ++g) {
    const std::string where = "spec.groups[" + std::to_string(g) + "]";
    if (!list.Get(g).IsObject()) throw Error(ErrorKind::Config, where + " must be an object");
    Napi::Object group = list.Get(g).As<Napi::Object>();
    spec.groupSizes.push_back(readIntField(group, "count", 1, kMax, where));
    spec.groupModality.push_back(readIntField(group, "modality", -1, kMax, where));
  }
  const Napi::Object r = readObjectField(obj, "router", "spec");
  const std::string where = "spec.router";
  spec.type = RouterSpec::Type(readIntField(r, "type", 0, 3, where));
  spec.topK = readIntField(r, "topK", 1, kMax, where);
  spec.score = RouterSpec::Score(readIntField(r, "score", 0, 1, where));
  spec.normalize = readBoolField(r, "normalize", where);
  spec.scale = readField(r, "scale", where);
  spec.limitGroups = readIntField(r, "limitGroups", 0, kMax, where);
  spec.limitTopGroups = readIntField(r, "limitTopGroups", 0, kMax, where);
  spec.useBias = readBoolField(r, "useBias", where);
  spec.biasUpdateRate = readField(r, "biasUpdateRate", where);
  spec.temperature = readField(r, "temperature", where);
  Napi::Value minAffinity = r.Get("minAffinity");
  spec.minAffinity = minAffinity.IsNull() || minAffinity.IsUndefined() ? -INFINITY : readField(r, "minAffinity", where);
  spec.loadPenalty = readField(r, "loadPenalty", where);
  spec.loadDecay = readField(r, "loadDecay", where);
  spec.capacityFactor = readField(r, "capacityFactor", where);
  spec.policy = RouterSpec::Policy(readIntField(r, "policy", 0, 2, where));
  spec.balanceCoeff = readField(r, "balanceCoeff", where);
  spec.scope = RouterSpec::Scope(readIntField(r, "scope", 0, 2, where));
  if (!r.Get("balanceMicroFraction").IsUndefined()) spec.balanceMicroFraction = readField(r, "balanceMicroFraction", where);
  spec.zCoeff = readField(r, "zCoeff", where);
  spec.orthCoeff = readField(r, "orthCoeff", where);
  spec.orthMode = OrthMode(readIntField(r, "orthMode", 0, 2, where));
  spec.seed = readSafeUint(r.Get("seed"), "spec.router.seed");
  return spec;
}

}  // namespace moekit::addon
