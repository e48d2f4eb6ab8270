// A one-rank stand-in for libnccl.so.2, so that test/dist.test.ts can run the NCCL backend
// (native/comm/nccl_comm.cc) on the SIMT emulator's device, where no real NCCL or GPU exists. It
// implements the functions of native/comm/nccl_abi.h for a single rank: every collective over one
// rank is a device-to-device copy, made with the emulated runtime's cudaMemcpy (looked up in the
// emulated addon, MOEKIT_ADDON_PATH). The emulator checks that both pointers are device memory, so
// a host pointer reaching NCCL fails the test. Its streams are synchronous, so a copy made at the
// call is what the stream would have done.
//
// Knobs (environment): FAKE_NCCL_VERSION (default 22304) is what ncclGetVersion reports;
// FAKE_NCCL_ASYNC_ERROR=1 makes ncclCommGetAsyncError report ncclRemoteError (a failed peer).
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

namespace {

struct FakeComm {
  int rank;
};

struct Pending {
  const void* send = nullptr;
  void* recv = nullptr;
  size_t bytes = 0;
};
Pending pending;  // the send/recv pair of one group, to oneself

constexpr int kSuccess = 0, kUnhandledCudaError = 1, kInvalidArgument = 4, kRemoteError = 6;
constexpr int kCudaMemcpyDeviceToDevice = 3;

// cudaMemcpy(dst, src, bytes, DeviceToDevice) of the emulated runtime; false when it fails.
bool deviceCopy(void* dst, const void* src, size_t bytes) {
  using Memcpy = int (*)(void*, const void*, size_t, int);
  static Memcpy memcpyFn = [] {
    const char* addon = std::getenv("MOEKIT_ADDON_PATH");
    void* handle = addon ? dlopen(addon, RTLD_NOW | RTLD_NOLOAD) : nullptr;
    return handle ? reinterpret_cast<Memcpy>(dlsym(handle, "cudaMemcpy")) : nullptr;
  }();
  return memcpyFn != nullptr && memcpyFn(dst, src, bytes, kCudaMemcpyDeviceToDevice) == 0;
}

size_t elementBytes(int type) {
  switch (type) {
    case 0:
    case 1: return 1;
    case 4:
    case 5:
    case 8: return 8;
    case 6:
    case 9: return 2;
    default: return 4;
  }
}

int copy(const void* send, void* recv, size_t count, int type) {
  if (count == 0 || send == recv) return kSuccess;
  return deviceCopy(recv, send, count * elementBytes(type)) ? kSuccess : kUnhandledCudaError;
}

}  // namespace

extern "C" {

int ncclGetVersion(int* version) {
  const char* forced = std::getenv("FAKE_NCCL_VERSION");
  *version = forced ? std::atoi(forced) : 22304;
  return kSuccess;
}

int ncclGetUniqueId(char* id) {
  std::memset(id, 0x5a, 128);
  return kSuccess;
}

struct UniqueId {
  char internal[128];
};

int ncclCommInitRank(FakeComm** comm, int nranks, UniqueId id, int rank) {
  if (nranks != 1 || rank != 0 || id.internal[0] != 0x5a || id.internal[127] != 0x5a) return kInvalidArgument;
  *comm = new FakeComm{rank};
  return kSuccess;
}

int ncclAllReduce(const void* send, void* recv, size_t count, int type, int, FakeComm*, void*) { return copy(send, recv, count, type); }
int ncclAllGather(const void* send, void* recv, size_t count, int type, FakeComm*, void*) { return copy(send, recv, count, type); }
int ncclReduceScatter(const void* send, void* recv, size_t count, int type, int, FakeComm*, void*) {
  return copy(send, recv, count, type);
}
int ncclBroadcast(const void* send, void* recv, size_t count, int type, int root, FakeComm*, void*) {
  return root == 0 ? copy(send, recv, count, type) : kInvalidArgument;
}

int ncclSend(const void* send, size_t count, int type, int peer, FakeComm*, void*) {
  if (peer != 0) return kInvalidArgument;
  pending.send = send;
  pending.bytes = count * elementBytes(type);
  return kSuccess;
}

int ncclRecv(void* recv, size_t count, int type, int peer, FakeComm*, void*) {
  if (peer != 0 || (pending.send && pending.bytes != count * elementBytes(type))) return kInvalidArgument;
  pending.recv = recv;
  return kSuccess;
}

int ncclGroupStart() {
  pending = Pending{};
  return kSuccess;
}

int ncclGroupEnd() {
  if ((pending.send == nullptr) != (pending.recv == nullptr)) return kInvalidArgument;
  const bool copied = pending.send == nullptr || deviceCopy(pending.recv, pending.send, pending.bytes);
  pending = Pending{};
  return copied ? kSuccess : kUnhandledCudaError;
}

int ncclCommDestroy(FakeComm* comm) {
  delete comm;
  return kSuccess;
}

int ncclCommAbort(FakeComm* comm) { return ncclCommDestroy(comm); }

int ncclCommGetAsyncError(FakeComm*, int* error) {
  const char* fail = std::getenv("FAKE_NCCL_ASYNC_ERROR");
  *error = fail && std::strcmp(fail, "1") == 0 ? kRemoteError : kSuccess;
  return kSuccess;
}

const char* ncclGetErrorString(int) { return "reported by the one-rank stand-in"; }

}  // extern "C"
