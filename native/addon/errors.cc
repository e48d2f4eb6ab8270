#include "errors.h"

#include <vector>

#include "addon_data.h"

namespace moekit::addon {

namespace {

constexpr const char* kClassNames[] = {"ShapeError",  "DTypeError",    "DeviceError", "MoEConfigError",
                                       "CommError",   "DisposedError", "FormatError", "ArgumentError"};

}  // namespace

Napi::Error makeError(Napi::Env env, ErrorKind kind, const std::string& message) {
  const size_t index = size_t(kind);
  Napi::FunctionReference& ctor = addonData(env).errorClasses[index];
  if (!ctor.IsEmpty()) {
    Napi::Object error = ctor.New({Napi::String::New(env, message)});
    return Napi::Error(env, error);
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("name", Napi::String::New(env, kClassNames[index]));
  return error;
}

// setErrorClasses({ShapeError, DTypeError, …}): each a constructor taking the message.
Napi::Value setErrorClasses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject()) {
    throw makeError(env, ErrorKind::Argument, "setErrorClasses(classes): classes must be an object of constructors");
  }
  Napi::Object classes = info[0].As<Napi::Object>();
  AddonData& data = addonData(env);
  // Every entry is checked before any is replaced: a rejected call keeps the classes in use.
  std::vector<Napi::Function> ctors;
  for (size_t i = 0; i < data.errorClasses.size(); ++i) {
    Napi::Value ctor = classes.Get(kClassNames[i]);
    if (!ctor.IsFunction()) {
      throw makeError(env, ErrorKind::Argument,
                      std::string("setErrorClasses(classes): classes.") + kClassNames[i] + " must be a constructor");
    }
    ctors.push_back(ctor.As<Napi::Function>());
  }
  for (size_t i = 0; i < ctors.size(); ++i) data.errorClasses[i] = Napi::Persistent(ctors[i]);
  return env.Undefined();
}

}  // namespace moekit::addon
