// Turning native failures into the typed JavaScript errors of lib/errors.ts. lib/native.ts hands
// the error classes to the addon once at load (setErrorClasses); before that, a plain Error with
// the class name as its `name` is thrown.
#pragma once

#include <napi.h>

#include <new>
#include <string>

#include "../core/errors.h"

namespace moekit::addon {

Napi::Error makeError(Napi::Env env, ErrorKind kind, const std::string& message);

// Runs a binding body and converts every C++ exception into a typed JavaScript error, so no
// exception can escape into Node-API (where it would terminate the process).
template <typename Body>
Napi::Value guarded(Napi::Env env, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw makeError(env, e.kind(), e.what());
  } catch (const std::bad_alloc&) {
    throw makeError(env, ErrorKind::Argument, "out of memory: the allocation could not be satisfied");
  } catch (const std::exception& e) {
    throw makeError(env, ErrorKind::Argument, std::string("internal error: ") + e.what());
  }
}

Napi::Value setErrorClasses(const Napi::CallbackInfo& info);

}  // namespace moekit::addon
