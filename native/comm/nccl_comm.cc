// The NCCL backend (GPU): libnccl.so.2 through nccl_abi.h, one communicator on one CUDA device
// with its own non-blocking stream. Compiled with the CUDA backend only.
//
// Memory: device (or managed) pointers are used as they are; host pointers are staged through
// device buffers the communicator keeps (copied in before the collective, out after it).
//
// Waiting: a collective is enqueued on the stream, then ncclCommGetAsyncError and the stream
// (cudaStreamQuery) are polled against the deadline. A failure or a timeout calls
// ncclCommAbort, which ends the kernels still waiting on this rank. NCCL has no side channel for
// abort notices: the peers fail when NCCL reports the remote failure or at their own deadline.
#include <cstring>
#include <string>

#include "../cuda/cuda_check.h"
#include "../cuda/device_buffer.h"
#include "backends.h"
#include "deadline.h"
#include "nccl_abi.h"

namespace moekit::comm {

namespace {

nccl::DataType ncclType(ElemType type) {
  switch (type) {
    case ElemType::F32: return nccl::Float32;
    case ElemType::F64: return nccl::Float64;
    case ElemType::I32: return nccl::Int32;
    case ElemType::I64: return nccl::Int64;
    case ElemType::BF16: return nccl::Bfloat16;
    case ElemType::F16: return nccl::Float16;
    default: return nccl::Uint8;  // u8 and fp8, which are only moved
  }
}

nccl::RedOp ncclOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return nccl::Sum;
    case ReduceOp::Avg: return nccl::Avg;
    case ReduceOp::Max: return nccl::Max;
  }
  return nccl::Sum;
}

bool onDevice(const void* pointer) {
  cudaPointerAttributes attributes;
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    cudaGetLastError();  // an unregistered host pointer on older runtimes: not device memory
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

int visibleDevices() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const nccl::Library& lib, nccl::Comm comm, cudaStream_t stream, int device, int rank, int size,
                   int64_t timeoutMs)
      : Communicator(rank, size, timeoutMs), lib_(lib), comm_(comm), stream_(stream), device_(device) {}
  ~NcclCommunicator() override { close(); }
  const char* backend() const override { return "nccl"; }

 protected:
  void doAllReduce(void* data, int64_t count, ElemType type, ReduceOp op) override {
    const size_t bytes = size_t(count) * elemBytes(type);
    void* d = inputInPlace(data, bytes, "allReduce");
    enqueue("ncclAllReduce", lib_.allReduce(d, d, size_t(count), ncclType(type), ncclOp(op), comm_, stream_));
    finish(d, data, bytes, "allReduce");
  }

  void doAllGather(const void* send, void* recv, int64_t count, ElemType type) override {
    const size_t bytes = size_t(count) * elemBytes(type);
    const void* s = input(send, bytes, "allGather");
    void* r = output(recv, bytes * size_t(size()));
    enqueue("ncclAllGather", lib_.allGather(s, r, size_t(count), ncclType(type), comm_, stream_));
    finish(r, recv, bytes * size_t(size()), "allGather");
  }

  void doReduceScatter(const void* send, void* recv, int64_t count, ElemType type, ReduceOp op) override {
    const size_t bytes = size_t(count) * elemBytes(type);
    const void* s = input(send, bytes * size_t(size()), "reduceScatter");
    void* r = output(recv, bytes);
    enqueue("ncclReduceScatter", lib_.reduceScatter(s, r, size_t(count), ncclType(type), ncclOp(op), comm_, stream_));
    finish(r, recv, bytes, "reduceScatter");
  }

  void doBroadcast(void* data, int64_t count, ElemType type, int root) override {
    const size_t bytes = size_t(count) * elemBytes(type);
    void* d = inputInPlace(data, bytes, "broadcast");
    enqueue("ncclBroadcast", lib_.broadcast(d, d, size_t(count), ncclType(type), root, comm_, stream_));
    finish(d, data, bytes, "broadcast");
  }

  void doAllToAllV(const void* send, const Counts& sendCounts, void* recv, const Counts& recvCounts, ElemType type) override {
    const size_t eb = elemBytes(type);
    int64_t sendTotal = 0, recvTotal = 0;
    for (int r = 0; r < size(); ++r) {
      sendTotal += sendCounts[size_t(r)];
      recvTotal += recvCounts[size_t(r)];
    }
    const unsigned char* s =
        static_cast<const unsigned char*>(input(send, size_t(sendTotal) * eb, "allToAllV"));
    unsigned char* r = static_cast<unsigned char*>(output(recv, size_t(recvTotal) * eb));
    enqueue("ncclGroupStart", lib_.groupStart());
    size_t sendOffset = 0, recvOffset = 0;
    for (int peer = 0; peer < size(); ++peer) {
      const size_t out = size_t(sendCounts[size_t(peer)]), in = size_t(recvCounts[size_t(peer)]);
      if (out > 0) enqueue("ncclSend", lib_.send(s + sendOffset * eb, out, ncclType(type), peer, comm_, stream_));
      if (in > 0) enqueue("ncclRecv", lib_.recv(r + recvOffset * eb, in, ncclType(type), peer, comm_, stream_));
      sendOffset += out;
      recvOffset += in;
    }
    enqueue("ncclGroupEnd", lib_.groupEnd());
    finish(r, recv, size_t(recvTotal) * eb, "allToAllV");
  }

  void doBarrier() override {
    int32_t token = 0;
    doAllReduce(&token, 1, ElemType::I32, ReduceOp::Sum);
  }

  void checkSplit() const override {
    if (lib_.commSplit == nullptr) {
      throw Error(ErrorKind::Comm, "split: " + lib_.path + " (version code " + std::to_string(lib_.version) +
                                       ") has no ncclCommSplit; splitting an NCCL communicator needs NCCL 2.18 or newer");
    }
  }

  // ncclCommSplit blocks until every rank of the parent called it (split()'s allGather, under the
  // deadline, showed they all did). The new communicator gets its own stream on this device.
  std::unique_ptr<Communicator> doSplit(int color, int key, int rank, int size) override {
    cuda::checkCuda(cudaSetDevice(device_), "split: cudaSetDevice(" + std::to_string(device_) + ")");
    cudaStream_t stream = nullptr;
    cuda::checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "split: cudaStreamCreateWithFlags");
    nccl::Comm part = nullptr;
    const nccl::Result result = lib_.commSplit(comm_, color, key, &part, nullptr);
    if (result != nccl::Success) {
      cudaStreamDestroy(stream);
      throw Error(ErrorKind::Comm, "split: ncclCommSplit(color " + std::to_string(color) + ", key " + std::to_string(key) +
                                       ") failed: " + nccl::describe(lib_, result));
    }
    return std::make_unique<NcclCommunicator>(lib_, part, stream, device_, rank, size, timeoutMs());
  }

  void notifyPeers(const std::string&) override { abortComm(); }

  void doClose() override {
    if (comm_) {
      cudaSetDevice(device_);
      lib_.commDestroy(comm_);
      comm_ = nullptr;
    }
    if (stream_) {
      cudaStreamDestroy(stream_);
      stream_ = nullptr;
    }
  }

 private:
  // A device address holding `bytes` of the caller's input: the pointer itself when it is device
  // memory, else the send staging buffer filled from host memory. Selects the device first.
  const void* input(const void* data, size_t bytes, const char* op) {
    cuda::checkCuda(cudaSetDevice(device_), std::string(op) + ": cudaSetDevice(" + std::to_string(device_) + ")");
    if (bytes == 0 || onDevice(data)) return data;
    unsigned char* d = staging(sendStage_, bytes, op);
    cuda::checkCuda(cuda::copyBlocking(d, data, bytes, cudaMemcpyHostToDevice), std::string(op) + ": staging the input");
    return d;
  }
  // In-place collectives: the input's device address is also where the result lands.
  void* inputInPlace(void* data, size_t bytes, const char* op) { return const_cast<void*>(input(data, bytes, op)); }

  // Where the collective writes `bytes` for the caller's `data`: itself when on the device.
  void* output(void* data, size_t bytes) {
    if (bytes == 0 || onDevice(data)) return data;
    return staging(recvStage_, bytes, "NCCL");
  }

  // A staging buffer of `bytes`: pool memory ordered on the device's stream, which the host waits
  // for before the blocking copies and this communicator's stream use it (host-memory
  // collectives wait for their copies anyway).
  unsigned char* staging(cuda::DeviceBuffer<unsigned char>& buffer, size_t bytes, const char* op) {
    unsigned char* d = buffer.reserve(bytes, "the NCCL staging buffer");
    cuda::checkCuda(cuda::streamSynchronize(cuda::deviceStream(op)), std::string(op) + ": waiting for the staging buffer");
    return d;
  }

  void enqueue(const char* call, nccl::Result result) {
    if (result != nccl::Success && result != nccl::InProgress) {
      throw Error(ErrorKind::Comm, std::string(call) + " failed: " + nccl::describe(lib_, result));
    }
  }

  // Waits for the stream, then copies a staged result back to the caller's host memory (only
  // after the collective completed, so that copy cannot block on a hung collective).
  void finish(const void* result, void* data, size_t bytes, const char* op) {
    wait(op);
    if (bytes > 0 && result != data) {
      cuda::checkCuda(cuda::copyBlocking(data, result, bytes, cudaMemcpyDeviceToHost), std::string(op) + ": copying the result out");
    }
  }

  void wait(const char* op) {
    const Deadline deadline(timeoutMs());
    Backoff backoff;
    for (;;) {
      // NCCL's verdict first: a collective whose peer failed may never complete.
      nccl::Result async = nccl::Success;
      const nccl::Result queried = lib_.commGetAsyncError(comm_, &async);
      if (queried != nccl::Success || (async != nccl::Success && async != nccl::InProgress)) {
        abortComm();
        throw Error(ErrorKind::Comm, std::string(op) + ": NCCL reported " +
                                         nccl::describe(lib_, queried != nccl::Success ? queried : async));
      }
      const cudaError_t state = cudaStreamQuery(stream_);
      if (state == cudaSuccess) {
        cuda::DeviceCounters::instance().synchronized();  // the host waited for the collective
        return;
      }
      if (state != cudaErrorNotReady) {
        abortComm();
        cuda::checkCuda(state, std::string(op) + ": the NCCL stream");
      }
      if (deadline.expired()) {
        abortComm();
        throw Error(ErrorKind::Comm, std::string(op) + ": timed out after " + std::to_string(timeoutMs()) +
                                         " ms waiting for the other ranks (the deadline is MOEKIT_COMM_TIMEOUT_MS or "
                                         "dist.init's timeoutMs); a rank failed, exited or called a different collective");
      }
      backoff.pause();
    }
  }

  void abortComm() {
    if (comm_) lib_.commAbort(comm_);
    comm_ = nullptr;
  }

  const nccl::Library& lib_;
  nccl::Comm comm_;
  cudaStream_t stream_;
  int device_;
  cuda::DeviceBuffer<unsigned char> sendStage_, recvStage_;
};

}  // namespace

void requireNccl() {
  const nccl::Library& lib = nccl::library();
  if (visibleDevices() == 0) {
    throw Error(ErrorKind::Device, "backend 'nccl': " + lib.path + " loaded (version code " + std::to_string(lib.version) +
                                       ") but no CUDA device is visible; NCCL needs one GPU per rank");
  }
}

NcclId ncclUniqueId() {
  const nccl::Library& lib = nccl::library();
  nccl::UniqueId id;
  const nccl::Result result = lib.getUniqueId(&id);
  if (result != nccl::Success) throw Error(ErrorKind::Comm, "ncclGetUniqueId failed: " + nccl::describe(lib, result));
  NcclId out;
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

std::unique_ptr<Communicator> createNcclCommunicator(const NcclId& id, int rank, int size, int device, int64_t timeoutMs) {
  requireNccl();
  const nccl::Library& lib = nccl::library();
  if (size < 1 || rank < 0 || rank >= size) {
    throw Error(ErrorKind::Argument, "backend 'nccl': rank: expected an integer in [0, size) with size ≥ 1, got rank " +
                                         std::to_string(rank) + " of size " + std::to_string(size));
  }
  const int count = visibleDevices();
  const int chosen = device < 0 ? rank % count : device;
  if (chosen >= count) {
    throw Error(ErrorKind::Device, "backend 'nccl': device: cuda:" + std::to_string(chosen) + " is not available (" +
                                       std::to_string(count) + " CUDA devices)");
  }
  cuda::checkCuda(cudaSetDevice(chosen), "backend 'nccl': cudaSetDevice(" + std::to_string(chosen) + ")");
  cudaStream_t stream = nullptr;
  cuda::checkCuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "backend 'nccl': cudaStreamCreateWithFlags");
  nccl::UniqueId uid;
  std::memcpy(uid.internal, id.data(), id.size());
  nccl::Comm comm = nullptr;
  const nccl::Result result = lib.commInitRank(&comm, size, uid, rank);
  if (result != nccl::Success) {
    cudaStreamDestroy(stream);
    throw Error(ErrorKind::Comm, "backend 'nccl': ncclCommInitRank(rank " + std::to_string(rank) + " of " +
                                     std::to_string(size) + ") failed: " + nccl::describe(lib, result));
  }
  return std::make_unique<NcclCommunicator>(lib, comm, stream, chosen, rank, size, timeoutMs);
}

}  // namespace moekit::comm
