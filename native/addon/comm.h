// NativeCommunicator: a communicator of native/comm for JavaScript (lib/dist.ts wraps it; the
// typed mirror is in lib/native.ts). Collectives take NativeTensors and return new ones on the
// input's device; every call checks its arguments, then that all ranks agree on sizes, dtype, op
// and root (Communicator::checkAgreement), before any data moves. The collectives run on host
// memory: a cuda tensor is staged through the host (downloaded, and the result uploaded to a new
// tensor on its device; host_copy.h).
#pragma once

#include <napi.h>

#include <memory>

#include "../comm/communicator.h"

namespace moekit::addon {

class NativeCommunicator : public Napi::ObjectWrap<NativeCommunicator> {
 public:
  static Napi::Function define(Napi::Env env);
  // The communicator behind a JavaScript value (for bindings that take one, such as a parallel
  // layer); throws Error(Argument) naming `name` otherwise.
  static comm::Communicator& unwrap(const Napi::Value& value, const char* name);

  explicit NativeCommunicator(const Napi::CallbackInfo& info);

 private:
  static Napi::Value ncclUniqueId(const Napi::CallbackInfo& info);
  Napi::Value getRank(const Napi::CallbackInfo& info);
  Napi::Value getSize(const Napi::CallbackInfo& info);
  Napi::Value getBackend(const Napi::CallbackInfo& info);
  Napi::Value getTimeoutMs(const Napi::CallbackInfo& info);
  Napi::Value getClosed(const Napi::CallbackInfo& info);
  Napi::Value allReduce(const Napi::CallbackInfo& info);
  Napi::Value allGather(const Napi::CallbackInfo& info);
  Napi::Value reduceScatter(const Napi::CallbackInfo& info);
  Napi::Value broadcast(const Napi::CallbackInfo& info);
  Napi::Value allToAllV(const Napi::CallbackInfo& info);
  Napi::Value barrier(const Napi::CallbackInfo& info);
  Napi::Value split(const Napi::CallbackInfo& info);
  Napi::Value abort(const Napi::CallbackInfo& info);
  Napi::Value close(const Napi::CallbackInfo& info);
  comm::Communicator& communicator() const;

  std::unique_ptr<comm::Communicator> comm_;
};

// The communicator backends this binary compiled, for buildInfo(): 'local' always, 'mpi' with
// MPI, 'nccl' with the CUDA backend.
Napi::Array commBackends(Napi::Env env);

}  // namespace moekit::addon
