// The part of NCCL's C ABI that moekit calls. libnccl.so.2 is loaded at run time (dlopen,
// nccl_library.cc) and never linked, so the build needs no nccl.h: these declarations follow the
// ABI of NCCL 2.x — an opaque communicator handle, a 128-byte unique id passed by value, C enums
// (int-sized) with fixed values, and every function returning an ncclResult_t.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace moekit::comm::nccl {

struct OpaqueComm;
using Comm = OpaqueComm*;  // ncclComm_t

struct UniqueId {  // ncclUniqueId
  char internal[128];
};

enum Result : int {  // ncclResult_t
  Success = 0,
  UnhandledCudaError = 1,
  SystemError = 2,
  InternalError = 3,
  InvalidArgument = 4,
  InvalidUsage = 5,
  RemoteError = 6,
  InProgress = 7,
};

enum DataType : int {  // ncclDataType_t (Float8e4m3/e5m2 need 2.24: fp8 travels as Uint8)
  Int8 = 0,
  Uint8 = 1,
  Int32 = 2,
  Uint32 = 3,
  Int64 = 4,
  Uint64 = 5,
  Float16 = 6,
  Float32 = 7,
  Float64 = 8,
  Bfloat16 = 9,
};

enum RedOp : int {  // ncclRedOp_t (Avg since 2.10)
  Sum = 0,
  Prod = 1,
  Max = 2,
  Min = 3,
  Avg = 4,
};

// NCCL's version code X·10000 + Y·100 + Z (the scheme of 2.9 and later).
constexpr int kMinVersion = 21000;  // 2.10: ncclAvg; ncclSend/ncclRecv came in 2.7

// The functions, resolved by dlsym under their NCCL names (ncclGetVersion, ncclAllReduce, …).
struct Library {
  std::string path;  // what dlopen loaded
  int version = 0;
  Result (*getVersion)(int* version);
  Result (*getUniqueId)(UniqueId* id);
  Result (*commInitRank)(Comm* comm, int nranks, UniqueId id, int rank);
  Result (*allReduce)(const void* send, void* recv, size_t count, DataType type, RedOp op, Comm comm, cudaStream_t stream);
  Result (*allGather)(const void* send, void* recv, size_t sendCount, DataType type, Comm comm, cudaStream_t stream);
  Result (*reduceScatter)(const void* send, void* recv, size_t recvCount, DataType type, RedOp op, Comm comm,
                          cudaStream_t stream);
  Result (*broadcast)(const void* send, void* recv, size_t count, DataType type, int root, Comm comm, cudaStream_t stream);
  Result (*send)(const void* send, size_t count, DataType type, int peer, Comm comm, cudaStream_t stream);
  Result (*recv)(void* recv, size_t count, DataType type, int peer, Comm comm, cudaStream_t stream);
  Result (*groupStart)();
  Result (*groupEnd)();
  Result (*commDestroy)(Comm comm);
  Result (*commAbort)(Comm comm);
  Result (*commGetAsyncError)(Comm comm, Result* asyncError);
  const char* (*getErrorString)(Result result);
  // ncclCommSplit (2.18 and later; null when the loaded library lacks it). config: an
  // ncclConfig_t*, passed as null (the new communicator inherits the parent's).
  Result (*commSplit)(Comm comm, int color, int key, Comm* newComm, void* config);
};

// The library, loaded on first use from (in order) MOEKIT_NCCL_PATH (the file, or a folder that
// holds libnccl.so.2), the default loader path, and pip's nvidia-nccl wheels
// (<prefix>/lib/python3*/{site,dist}-packages/nvidia/nccl/lib/ under $VIRTUAL_ENV, $CONDA_PREFIX,
// ~/.local, /usr/local and /usr). Throws Error(Comm) listing what was tried, or naming a
// missing function or a version older than 2.10; a later call tries again.
const Library& library();

// "ncclUnhandledCudaError: <NCCL's text>" for error messages.
std::string describe(const Library& lib, Result result);

}  // namespace moekit::comm::nccl
