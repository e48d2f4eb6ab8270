// Per-environment state of the addon (Node-API instance data): the constructors it needs to
// create objects of its own and the JavaScript error classes it throws.
#pragma once

#include <napi.h>

#include <array>

#include "../core/errors.h"

namespace moekit::addon {

struct AddonData {
  Napi::FunctionReference tensorConstructor;
  Napi::FunctionReference communicatorConstructor;  // set by NativeCommunicator::define (split)
  std::array<Napi::FunctionReference, 8> errorClasses;  // indexed by ErrorKind
};

inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace moekit::addon
