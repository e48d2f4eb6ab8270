#include "comm.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "../comm/backends.h"
#include "../core/shape.h"
#include "addon_data.h"
#include "args.h"
#include "errors.h"
#include "host_copy.h"
#include "tensor.h"

namespace moekit::addon {

namespace {

// Marks the objects this class made, so unwrap() can tell them from look-alikes.
constexpr napi_type_tag kCommunicatorTag = {0x6d6f656b69742e63, 0x6f6d6d756e696361};

struct Options {
  std::string backend;
  std::optional<int64_t> rank, size, device;
  std::optional<comm::NcclId> id;
  int64_t timeoutMs = 0;
};

std::optional<int64_t> optionalInteger(const Napi::Object& opts, const char* key, int64_t lo, int64_t hi) {
  const Napi::Value value = opts.Get(key);
  if (value.IsUndefined()) return std::nullopt;
  const double d = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1.0;
  if (!value.IsNumber() || !(d >= double(lo) && d <= double(hi)) || double(int64_t(d)) != d) {
    throw Error(ErrorKind::Argument, std::string("opts.") + key + ": expected an integer in [" + std::to_string(lo) + ", " +
                                         std::to_string(hi) + "], got " + describe(value));
  }
  return int64_t(d);
}

Options readOptions(const Napi::Object& opts) {
  Options o;
  const Napi::Value backend = opts.Get("backend");
  o.backend = backend.IsString() ? backend.As<Napi::String>().Utf8Value() : "";
  if (o.backend != "local" && o.backend != "mpi" && o.backend != "nccl") {
    throw Error(ErrorKind::Argument, "opts.backend: expected 'nccl', 'mpi' or 'local', got " + describe(backend));
  }
  o.size = optionalInteger(opts, "size", 1, kMaxElements);
  o.rank = optionalInteger(opts, "rank", 0, kMaxElements);
  if (o.rank && o.size && *o.rank >= *o.size) {
    throw Error(ErrorKind::Argument, "opts.rank: expected an integer in [0, opts.size − 1 = " + std::to_string(*o.size - 1) +
                                         "], got " + std::to_string(*o.rank));
  }
  o.device = optionalInteger(opts, "device", 0, 1 << 20);
  const std::optional<int64_t> timeout = optionalInteger(opts, "timeoutMs", 1, kMaxElements);
  o.timeoutMs = timeout ? *timeout : comm::defaultTimeoutMs();
  const Napi::Value id = opts.Get("id");
  if (!id.IsUndefined()) {
    if (!id.IsTypedArray() || id.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw Error(ErrorKind::Argument, "opts.id: expected a Uint8Array of 128 bytes (dist.ncclUniqueId()), got " + describe(id));
    }
    Napi::Uint8Array bytes = id.As<Napi::Uint8Array>();
    if (bytes.ByteLength() != 128) {
      throw Error(ErrorKind::Shape, "opts.id: expected 128 bytes (dist.ncclUniqueId()), got " + std::to_string(bytes.ByteLength()));
    }
    if (bytes.Data() == nullptr) throw Error(ErrorKind::Disposed, "opts.id is a view of a detached buffer");
    comm::NcclId value;
    std::memcpy(value.data(), bytes.Data(), value.size());
    o.id = value;
  }
  if (o.id && o.backend != "nccl") throw Error(ErrorKind::Argument, "opts.id: only backend 'nccl' takes an id, got backend '" + o.backend + "'");
  if (o.device && o.backend != "nccl") {
    throw Error(ErrorKind::Argument, "opts.device: only backend 'nccl' takes a device, got backend '" + o.backend + "'");
  }
  return o;
}

#if MOEKIT_HAVE_MPI
// A rank's own view of rank/size must match what the backend found; on a mismatch this rank
// aborts (so the others fail at once, not at their deadline) and throws.
void checkMatches(comm::Communicator& c, const Options& o, const char* what) {
  std::string mismatch;
  if (o.size && *o.size != c.size()) {
    mismatch = "opts.size: " + std::to_string(*o.size) + " does not match " + what + " size " + std::to_string(c.size());
  } else if (o.rank && *o.rank != c.rank()) {
    mismatch = "opts.rank: " + std::to_string(*o.rank) + " does not match " + what + " rank " + std::to_string(c.rank());
  }
  if (mismatch.empty()) return;
  c.abort(mismatch);
  throw Error(ErrorKind::Argument, mismatch);
}
#endif

#if !MOEKIT_HAVE_MPI || !MOEKIT_HAVE_CUDA
[[noreturn]] void notCompiled(const std::string& backend, const std::string& why) {
  throw Error(ErrorKind::Comm, "backend '" + backend + "' is not in this binary: " + why);
}
#endif

#if MOEKIT_HAVE_CUDA
std::unique_ptr<comm::Communicator> openNccl(const Options& o) {
  if (o.id && (!o.rank || !o.size)) {
    throw Error(ErrorKind::Argument, "opts.rank and opts.size: backend 'nccl' with opts.id needs both (every rank passes the "
                                     "same id and size and its own rank)");
  }
  comm::requireNccl();
  const int device = o.device ? int(*o.device) : -1;
  if (o.id) {
    return comm::createNcclCommunicator(*o.id, int(*o.rank), int(*o.size), device, o.timeoutMs);
  }
#if MOEKIT_HAVE_MPI
  // Rank 0 creates the id and MPI carries it to the others.
  std::unique_ptr<comm::Communicator> mpi = comm::createMpiCommunicator(o.timeoutMs);
  checkMatches(*mpi, o, "the MPI job's");
  comm::NcclId id{};
  if (mpi->rank() == 0) {
    try {
      id = comm::ncclUniqueId();
    } catch (const std::exception& e) {
      mpi->abort(e.what());
      throw;
    }
  }
  mpi->broadcast(id.data(), int64_t(id.size()), comm::ElemType::U8, 0);
  const int rank = mpi->rank(), size = mpi->size();
  mpi->close();
  return comm::createNcclCommunicator(id, rank, size, device, o.timeoutMs);
#else
  throw Error(ErrorKind::Comm, "backend 'nccl' without opts.id shares the unique id over MPI, which this binary lacks; pass "
                               "{rank, size, id} with an id from dist.ncclUniqueId() on one rank, sent to the others by "
                               "your own channel");
#endif
}
#endif

std::unique_ptr<comm::Communicator> open(const Options& o) {
  if (o.backend == "local") {
    if (o.size && *o.size != 1) throw Error(ErrorKind::Argument, "opts.size: the local backend has one rank, got " + std::to_string(*o.size));
    if (o.rank && *o.rank != 0) throw Error(ErrorKind::Argument, "opts.rank: the local backend has rank 0 only, got " + std::to_string(*o.rank));
    return comm::createLocalCommunicator(o.timeoutMs);
  }
  if (o.backend == "mpi") {
#if MOEKIT_HAVE_MPI
    std::unique_ptr<comm::Communicator> c = comm::createMpiCommunicator(o.timeoutMs);
    checkMatches(*c, o, "the MPI job's");
    return c;
#else
    notCompiled("mpi", "CMake found no MPI when it was built (install libopenmpi-dev, then npm run build:native)");
#endif
  }
#if MOEKIT_HAVE_CUDA
  return openNccl(o);
#else
  notCompiled("nccl", "NCCL is compiled with the CUDA backend, and this binary was built without nvcc");
#endif
}

comm::ReduceOp readOp(const Napi::Value& value, const char* name) {
  const std::string op = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (op == "sum") return comm::ReduceOp::Sum;
  if (op == "avg") return comm::ReduceOp::Avg;
  if (op == "max") return comm::ReduceOp::Max;
  throw Error(ErrorKind::Argument, std::string(name) + ": expected 'sum', 'avg' or 'max', got " + describe(value));
}

// The reductions' dtypes as JavaScript tensors have them: f32 and i32 (avg: f32).
comm::ElemType reducibleType(const NativeTensor& t, comm::ReduceOp op, const char* collective) {
  const comm::ElemType type = comm::elemTypeOf(t.dtype());
  if (!comm::isReducible(type)) {
    throw Error(ErrorKind::DType, std::string("t: ") + collective + " reduces f32 or i32 tensors, got " + dtypeName(t.dtype()));
  }
  if (op == comm::ReduceOp::Avg && !comm::isFloating(type)) {
    throw Error(ErrorKind::DType, std::string("t: ") + collective + " with op 'avg' takes an f32 tensor, got " + dtypeName(t.dtype()));
  }
  return type;
}

void checkArgs(const Napi::CallbackInfo& info, size_t count, const char* signature) {
  if (info.Length() != count) {
    throw Error(ErrorKind::Argument, std::string(signature) + " takes " + std::to_string(count) + " argument" +
                                         (count == 1 ? "" : "s") + ", got " + std::to_string(info.Length()));
  }
}

// A rank of t's leading dimension: t must have at least one dimension.
void checkLeadingDim(const NativeTensor& t, const char* collective) {
  if (t.shape().empty()) {
    throw Error(ErrorKind::Shape, std::string("t: ") + collective + " splits dimension 0, so t needs at least one dimension, got shape []");
  }
}

}  // namespace

Napi::Function NativeCommunicator::define(Napi::Env env) {
  Napi::Function constructor = DefineClass(env, "NativeCommunicator",
                     {StaticMethod("ncclUniqueId", &NativeCommunicator::ncclUniqueId),
                      InstanceAccessor("rank", &NativeCommunicator::getRank, nullptr),
                      InstanceAccessor("size", &NativeCommunicator::getSize, nullptr),
                      InstanceAccessor("backend", &NativeCommunicator::getBackend, nullptr),
                      InstanceAccessor("timeoutMs", &NativeCommunicator::getTimeoutMs, nullptr),
                      InstanceAccessor("closed", &NativeCommunicator::getClosed, nullptr),
                      InstanceMethod("allReduce", &NativeCommunicator::allReduce),
                      InstanceMethod("allGather", &NativeCommunicator::allGather),
                      InstanceMethod("reduceScatter", &NativeCommunicator::reduceScatter),
                      InstanceMethod("broadcast", &NativeCommunicator::broadcast),
                      InstanceMethod("allToAllV", &NativeCommunicator::allToAllV),
                      InstanceMethod("barrier", &NativeCommunicator::barrier),
                      InstanceMethod("split", &NativeCommunicator::split),
                      InstanceMethod("abort", &NativeCommunicator::abort),
                      InstanceMethod("close", &NativeCommunicator::close)});
  addonData(env).communicatorConstructor = Napi::Persistent(constructor);
  return constructor;
}

comm::Communicator& NativeCommunicator::unwrap(const Napi::Value& value, const char* name) {
  if (value.IsObject() && value.As<Napi::Object>().CheckTypeTag(&kCommunicatorTag)) {
    NativeCommunicator* wrapper = Unwrap(value.As<Napi::Object>());
    if (wrapper != nullptr && wrapper->comm_) return *wrapper->comm_;
  }
  throw Error(ErrorKind::Argument, std::string(name) + ": expected a communicator from dist.init(), got " + describe(value));
}

// new NativeCommunicator({backend, rank?, size?, id?, timeoutMs?, device?}); split() passes an
// External holding the communicator it made (JavaScript cannot make one).
NativeCommunicator::NativeCommunicator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeCommunicator>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&]() -> Napi::Value {
    if (info.Length() == 1 && info[0].IsExternal()) {
      comm_.reset(info[0].As<Napi::External<comm::Communicator>>().Data());
      info.This().As<Napi::Object>().TypeTag(&kCommunicatorTag);
      return env.Undefined();
    }
    if (info.Length() != 1 || !info[0].IsObject()) {
      throw Error(ErrorKind::Argument, "opts: expected an object {backend, rank?, size?, id?, timeoutMs?, device?}, got " +
                                           describe(info.Length() > 0 ? info[0] : env.Undefined()));
    }
    comm_ = open(readOptions(info[0].As<Napi::Object>()));
    info.This().As<Napi::Object>().TypeTag(&kCommunicatorTag);
    return env.Undefined();
  });
}

// NativeCommunicator.ncclUniqueId(): Uint8Array(128).
Napi::Value NativeCommunicator::ncclUniqueId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
#if MOEKIT_HAVE_CUDA
    const comm::NcclId id = comm::ncclUniqueId();
    Napi::Uint8Array out = Napi::Uint8Array::New(env, id.size());
    std::memcpy(out.Data(), id.data(), id.size());
    return out;
#else
    notCompiled("nccl", "NCCL is compiled with the CUDA backend, and this binary was built without nvcc");
#endif
  });
}

comm::Communicator& NativeCommunicator::communicator() const {
  if (!comm_) throw Error(ErrorKind::Argument, "the communicator was not constructed");
  return *comm_;
}

Napi::Value NativeCommunicator::getRank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), comm_ ? comm_->rank() : -1); }
Napi::Value NativeCommunicator::getSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), comm_ ? comm_->size() : 0); }
Napi::Value NativeCommunicator::getBackend(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), comm_ ? comm_->backend() : "");
}
Napi::Value NativeCommunicator::getTimeoutMs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), comm_ ? double(comm_->timeoutMs()) : 0.0);
}
Napi::Value NativeCommunicator::getClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !comm_ || comm_->closed());
}

// allReduce(t, op): a new tensor, op over every rank's t.
Napi::Value NativeCommunicator::allReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkArgs(info, 2, "allReduce(t, op)");
    NativeTensor& t = NativeTensor::unwrap(info[0], "t");
    t.checkLive("t");  // DisposedError before any other complaint
    const comm::ReduceOp op = readOp(info[1], "op");
    const comm::ElemType type = reducibleType(t, op, "allReduce");
    communicator().checkAgreement("allReduce", t.numel(), type, "op", int64_t(op));
    HostOutput out(env, t.dtype(), t.shape(), t.device());
    t.readBytes(out.data(), "t");
    communicator().allReduce(out.data(), t.numel(), type, op);
    out.upload();
    return out.handle();
  });
}

// allGather(t): every rank's t concatenated along dimension 0 in rank order ([size] for a scalar).
Napi::Value NativeCommunicator::allGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkArgs(info, 1, "allGather(t)");
    NativeTensor& t = NativeTensor::unwrap(info[0], "t");
    t.checkLive("t");
    const comm::ElemType type = comm::elemTypeOf(t.dtype());
    if (t.numel() > kMaxElements / communicator().size()) {
      throw Error(ErrorKind::Shape, "t: allGather of " + std::to_string(t.numel()) + " elements from " +
                                        std::to_string(communicator().size()) + " ranks exceeds 2^31-1 elements");
    }
    communicator().checkAgreement("allGather", t.numel(), type, "", 0);
    std::vector<int64_t> shape = t.shape();
    if (shape.empty()) shape.push_back(communicator().size());
    else shape[0] *= communicator().size();
    const HostInput in(t, "t");
    HostOutput out(env, t.dtype(), shape, t.device());
    communicator().allGather(in.data(), out.data(), t.numel(), type);
    out.upload();
    return out.handle();
  });
}

// reduceScatter(t, op): t's dimension 0 split into size blocks; rank r gets block r of the op.
Napi::Value NativeCommunicator::reduceScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkArgs(info, 2, "reduceScatter(t, op)");
    NativeTensor& t = NativeTensor::unwrap(info[0], "t");
    t.checkLive("t");
    const comm::ReduceOp op = readOp(info[1], "op");
    const comm::ElemType type = reducibleType(t, op, "reduceScatter");
    checkLeadingDim(t, "reduceScatter");
    const int size = communicator().size();
    if (t.shape()[0] % size != 0) {
      throw Error(ErrorKind::Shape, "t: reduceScatter needs shape[0] divisible by the communicator size " + std::to_string(size) +
                                        ", got shape " + shapeString(t.shape()));
    }
    communicator().checkAgreement("reduceScatter", t.numel(), type, "op", int64_t(op));
    std::vector<int64_t> shape = t.shape();
    shape[0] /= size;
    const HostInput in(t, "t");
    HostOutput out(env, t.dtype(), shape, t.device());
    communicator().reduceScatter(in.data(), out.data(), t.numel() / size, type, op);
    out.upload();
    return out.handle();
  });
}

// broadcast(t, root): a new tensor holding root's t.
Napi::Value NativeCommunicator::broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkArgs(info, 2, "broadcast(t, root)");
    NativeTensor& t = NativeTensor::unwrap(info[0], "t");
    t.checkLive("t");
    const double root = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1.0;
    if (!info[1].IsNumber() || !(root >= 0 && root < communicator().size()) || double(int64_t(root)) != root) {
      throw Error(ErrorKind::Argument, "root: expected a rank in [0, " + std::to_string(communicator().size() - 1) + "], got " +
                                           describe(info[1]));
    }
    const comm::ElemType type = comm::elemTypeOf(t.dtype());
    communicator().checkAgreement("broadcast", t.numel(), type, "root", int64_t(root));
    HostOutput out(env, t.dtype(), t.shape(), t.device());
    t.readBytes(out.data(), "t");
    communicator().broadcast(out.data(), t.numel(), type, int(root));
    out.upload();
    return out.handle();
  });
}

// allToAllV(t, sendCounts): rows of t (dimension 0) in rank order, sendCounts[r] of them to rank
// r → {tensor: the rows received, in source-rank order, recvCounts: rows from each rank}.
Napi::Value NativeCommunicator::allToAllV(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkArgs(info, 2, "allToAllV(t, sendCounts)");
    NativeTensor& t = NativeTensor::unwrap(info[0], "t");
    t.checkLive("t");
    checkLeadingDim(t, "allToAllV");
    const int size = communicator().size();
    if (!info[1].IsArray() || info[1].As<Napi::Array>().Length() != uint32_t(size)) {
      throw Error(ErrorKind::Shape, "sendCounts: expected an array of " + std::to_string(size) + " row counts (one per rank), got " +
                                        describe(info[1]) +
                                        (info[1].IsArray() ? " of length " + std::to_string(info[1].As<Napi::Array>().Length()) : ""));
    }
    Napi::Array counts = info[1].As<Napi::Array>();
    comm::Counts sendRows;
    int64_t total = 0;
    for (int r = 0; r < size; ++r) {
      const std::string name = "sendCounts[" + std::to_string(r) + "]";
      const int64_t rows = int64_t(readSafeUint(counts.Get(uint32_t(r)), name.c_str()));
      if (rows > kMaxElements) throw Error(ErrorKind::Shape, name + ": expected at most 2^31-1 rows, got " + std::to_string(rows));
      sendRows.push_back(rows);
      total += rows;
    }
    t.checkLive("t");  // sendCounts' accessors ran user code: t is checked again before any collective
    const int64_t leading = t.shape()[0];
    if (total != leading) {
      throw Error(ErrorKind::Shape, "sendCounts: expected counts summing to t.shape[0] = " + std::to_string(leading) + ", got " +
                                        std::to_string(total));
    }
    std::vector<int64_t> rowShape(t.shape().begin() + 1, t.shape().end());
    const int64_t rowElements = numelOf(rowShape);
    const comm::ElemType type = comm::elemTypeOf(t.dtype());
    communicator().checkAgreement("allToAllV (elements per row of t)", rowElements, type, "", 0);
    const comm::Counts recvRows = communicator().exchangeCounts(sendRows);
    int64_t received = 0;
    for (int64_t rows : recvRows) received += rows;
    if (received * std::max<int64_t>(rowElements, 1) > kMaxElements) {
      const std::string why = "rank " + std::to_string(communicator().rank()) + " would receive " + std::to_string(received) +
                              " rows of " + std::to_string(rowElements) + " elements, more than a tensor holds (2^31-1)";
      communicator().abort(why);
      throw Error(ErrorKind::Shape, "sendCounts: " + why);
    }
    comm::Counts sendElements, recvElements;
    for (int r = 0; r < size; ++r) {
      sendElements.push_back(sendRows[size_t(r)] * rowElements);
      recvElements.push_back(recvRows[size_t(r)] * rowElements);
    }
    std::vector<int64_t> shape = t.shape();
    shape[0] = received;
    const HostInput in(t, "t");
    HostOutput out(env, t.dtype(), shape, t.device());
    communicator().allToAllV(in.data(), sendElements, out.data(), recvElements, type);
    out.upload();
    const Napi::Object tensor = out.handle();
    Napi::Array recvCounts = Napi::Array::New(env, size_t(size));
    for (int r = 0; r < size; ++r) recvCounts.Set(uint32_t(r), Napi::Number::New(env, double(recvRows[size_t(r)])));
    Napi::Object result = Napi::Object::New(env);
    result.Set("tensor", tensor);
    result.Set("recvCounts", recvCounts);
    return result;
  });
}

Napi::Value NativeCommunicator::barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkArgs(info, 0, "barrier()");
    communicator().barrier();
    return env.Undefined();
  });
}

// split(color, key): a new communicator over the ranks passing this color, ranked by (key, rank);
// collective (communicator.h, "Splitting").
Napi::Value NativeCommunicator::split(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkArgs(info, 2, "split(color, key)");
    // int32 here; a color < 0 is refused by Communicator::split on every rank alike.
    const char* names[2] = {"color", "key"};
    int values[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
      const double d = info[size_t(i)].IsNumber() ? info[size_t(i)].As<Napi::Number>().DoubleValue() : 0.5;
      if (!info[size_t(i)].IsNumber() || !(d >= -2147483648.0 && d <= 2147483647.0) || double(int64_t(d)) != d) {
        throw Error(ErrorKind::Argument, std::string(names[i]) + ": expected an integer in [-2147483648, 2147483647], got " +
                                             describe(info[size_t(i)]));
      }
      values[i] = int(d);
    }
    // The new object's constructor takes ownership first thing.
    comm::Communicator* part = communicator().split(values[0], values[1]).release();
    return addonData(env).communicatorConstructor.New({Napi::External<comm::Communicator>::New(env, part)});
  });
}

// abort(reason): breaks the communicator here and tells the peers (communicator.h).
Napi::Value NativeCommunicator::abort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    checkArgs(info, 1, "abort(reason)");
    if (!info[0].IsString()) throw Error(ErrorKind::Argument, "reason: expected a string, got " + describe(info[0]));
    communicator().abort(info[0].As<Napi::String>().Utf8Value());
    return env.Undefined();
  });
}

Napi::Value NativeCommunicator::close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    communicator().close();
    return env.Undefined();
  });
}

Napi::Array commBackends(Napi::Env env) {
  Napi::Array list = Napi::Array::New(env);
  list.Set(list.Length(), "local");
  if (MOEKIT_HAVE_MPI) list.Set(list.Length(), "mpi");
  if (MOEKIT_HAVE_CUDA) list.Set(list.Length(), "nccl");
  return list;
}

}  // namespace moekit::addon
