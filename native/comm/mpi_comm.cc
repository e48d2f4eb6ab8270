// The MPI backend (CPU): a duplicate of MPI_COMM_WORLD, every collective a non-blocking MPI call
// polled against the communicator's deadline (communicator.h, "Failure").
//
// MPI is initialised on first use with MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE) — never
// argv, which belongs to Node — and finalised at exit (only when moekit initialised it). A
// library that provides only MPI_THREAD_SERIALIZED is accepted: every MPI call then holds one
// process-wide mutex. Errors come back as codes (MPI_ERRORS_RETURN), never as an MPI abort.
//
// Staging. A collective works on buffers it owns: the caller's data is copied in, the result
// copied out. A collective that fails stays posted inside MPI (MPI cannot cancel one), so its
// buffers are kept until the process ends instead of being freed under it; the caller's memory
// is never touched after the call returns.
//
// Abort notices are point-to-point messages with tag kAbortTag on the communicator (collective
// traffic never matches them); the text names the rank and the reason. Every poll probes for one.

// The C API only: from C++, mpi.h would also declare the deprecated C++ bindings (libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backends.h"
#include "deadline.h"

namespace moekit::comm {

namespace {

constexpr int kAbortTag = 7;

std::mutex initMutex;
std::mutex callMutex;
bool serializedCalls = false;  // the library gave MPI_THREAD_SERIALIZED: one MPI call at a time

// Holds callMutex when the library is not MPI_THREAD_MULTIPLE.
class CallLock {
 public:
  CallLock() : lock_(callMutex, std::defer_lock) {
    if (serializedCalls) lock_.lock();
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

// Buffers (and MPI handles) of failed collectives, which MPI may still write: kept to the end.
std::mutex graveyardMutex;
std::vector<std::shared_ptr<void>> graveyard;

void keepForever(std::shared_ptr<void> owner) {
  std::lock_guard<std::mutex> lock(graveyardMutex);
  graveyard.push_back(std::move(owner));
}

std::string mpiError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, size_t(length));
}

void check(int code, const std::string& op, const char* call) {
  if (code != MPI_SUCCESS) throw Error(ErrorKind::Comm, op + ": " + call + " failed: " + mpiError(code));
}

void finalizeAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void ensureInitialized() {
  std::lock_guard<std::mutex> lock(initMutex);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) throw Error(ErrorKind::Comm, "dist.init: MPI was already finalized in this process");
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = 0;
  if (initialized) {
    MPI_Query_thread(&provided);
  } else {
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "dist.init", "MPI_Init_thread");
    std::atexit(finalizeAtExit);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    throw Error(ErrorKind::Comm, "dist.init: MPI provides thread level " + std::to_string(provided) +
                                     "; moekit needs MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE");
  }
  serializedCalls = provided < MPI_THREAD_MULTIPLE;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MPI_Datatype mpiType(ElemType type) {
  switch (type) {
    case ElemType::F32: return MPI_FLOAT;
    case ElemType::F64: return MPI_DOUBLE;
    case ElemType::I32: return MPI_INT32_T;
    case ElemType::I64: return MPI_INT64_T;
    case ElemType::BF16:
    case ElemType::F16: return MPI_UINT16_T;  // moved, never reduced
    default: return MPI_UINT8_T;
  }
}

MPI_Op mpiOp(ReduceOp op) { return op == ReduceOp::Max ? MPI_MAX : MPI_SUM; }

// avg = sum / size, in the element type (floats only: communicator.cc refuses integer avg).
void divideBy(void* data, int64_t count, ElemType type, int size) {
  if (type == ElemType::F64) {
    double* d = static_cast<double*>(data);
    for (int64_t i = 0; i < count; ++i) d[i] /= double(size);
  } else {
    float* f = static_cast<float*>(data);
    for (int64_t i = 0; i < count; ++i) f[i] /= float(size);
  }
}

// The memory one posted collective uses: its buffers, counts and request.
struct Posted {
  std::unique_ptr<unsigned char[]> send, recv;
  std::vector<int> sendCounts, sendDispls, recvCounts, recvDispls;
  MPI_Request request = MPI_REQUEST_NULL;

  Posted(size_t sendBytes, size_t recvBytes)
      : send(new unsigned char[sendBytes > 0 ? sendBytes : 1]), recv(new unsigned char[recvBytes > 0 ? recvBytes : 1]) {}
};

// The text of a peer's abort notice waiting on `comm`, if one is.
std::optional<std::string> receiveNotice(MPI_Comm comm) {
  CallLock lock;
  int found = 0;
  MPI_Status status;
  if (MPI_Iprobe(MPI_ANY_SOURCE, kAbortTag, comm, &found, &status) != MPI_SUCCESS || !found) return std::nullopt;
  int length = 0;
  MPI_Get_count(&status, MPI_CHAR, &length);
  std::string text(size_t(length > 0 ? length : 0), '\0');
  MPI_Recv(text.data(), length, MPI_CHAR, status.MPI_SOURCE, kAbortTag, comm, MPI_STATUS_IGNORE);
  return text;
}

// Waits for `request` until it completes, `probe` (when not MPI_COMM_NULL) receives an abort
// notice, or the deadline passes; `owner` is kept forever when the wait fails.
void waitFor(MPI_Request* request, const std::shared_ptr<void>& owner, MPI_Comm probe, int64_t timeoutMs,
             const std::string& op, const std::string& waitingFor) {
  const Deadline deadline(timeoutMs);
  Backoff backoff;
  for (;;) {
    int done = 0;
    int code;
    {
      CallLock lock;
      code = MPI_Test(request, &done, MPI_STATUS_IGNORE);
    }
    if (code != MPI_SUCCESS) {
      keepForever(owner);
      check(code, op, "MPI_Test");
    }
    if (done) return;
    if (probe != MPI_COMM_NULL) {
      if (std::optional<std::string> notice = receiveNotice(probe)) {
        keepForever(owner);
        throw PeerFailure(op + ": " + *notice);
      }
    }
    if (deadline.expired()) {
      keepForever(owner);
      throw Error(ErrorKind::Comm, op + ": timed out after " + std::to_string(timeoutMs) + " ms waiting for " + waitingFor +
                                       " (the deadline is MOEKIT_COMM_TIMEOUT_MS or dist.init's timeoutMs); a rank "
                                       "failed, exited or called a different collective");
    }
    backoff.pause();
  }
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, int rank, int size, int64_t timeoutMs)
      : Communicator(rank, size, timeoutMs), comm_(comm) {}
  ~MpiCommunicator() override { close(); }
  const char* backend() const override { return "mpi"; }

 protected:
  void doAllReduce(void* data, int64_t count, ElemType type, ReduceOp op) override {
    const size_t bytes = size_t(count) * elemBytes(type);
    auto posted = prepare("allReduce", bytes, 0);
    if (bytes > 0) std::memcpy(posted->send.get(), data, bytes);
    {
      CallLock lock;
      check(MPI_Iallreduce(MPI_IN_PLACE, posted->send.get(), int(count), mpiType(type), mpiOp(op), comm_, &posted->request),
            "allReduce", "MPI_Iallreduce");
    }
    wait(posted, "allReduce");
    if (op == ReduceOp::Avg) divideBy(posted->send.get(), count, type, size());
    if (bytes > 0) std::memcpy(data, posted->send.get(), bytes);
  }

  void doAllGather(const void* send, void* recv, int64_t count, ElemType type) override {
    const size_t bytes = size_t(count) * elemBytes(type);
    auto posted = prepare("allGather", bytes, bytes * size_t(size()));
    if (bytes > 0) std::memcpy(posted->send.get(), send, bytes);
    {
      CallLock lock;
      check(MPI_Iallgather(posted->send.get(), int(count), mpiType(type), posted->recv.get(), int(count), mpiType(type),
                           comm_, &posted->request),
            "allGather", "MPI_Iallgather");
    }
    wait(posted, "allGather");
    if (bytes > 0) std::memcpy(recv, posted->recv.get(), bytes * size_t(size()));
  }

  void doReduceScatter(const void* send, void* recv, int64_t count, ElemType type, ReduceOp op) override {
    const size_t bytes = size_t(count) * elemBytes(type);
    auto posted = prepare("reduceScatter", bytes * size_t(size()), bytes);
    if (bytes > 0) std::memcpy(posted->send.get(), send, bytes * size_t(size()));
    {
      CallLock lock;
      check(MPI_Ireduce_scatter_block(posted->send.get(), posted->recv.get(), int(count), mpiType(type), mpiOp(op), comm_,
                                      &posted->request),
            "reduceScatter", "MPI_Ireduce_scatter_block");
    }
    wait(posted, "reduceScatter");
    if (op == ReduceOp::Avg) divideBy(posted->recv.get(), count, type, size());
    if (bytes > 0) std::memcpy(recv, posted->recv.get(), bytes);
  }

  void doBroadcast(void* data, int64_t count, ElemType type, int root) override {
    const size_t bytes = size_t(count) * elemBytes(type);
    auto posted = prepare("broadcast", bytes, 0);
    if (bytes > 0) std::memcpy(posted->send.get(), data, bytes);
    {
      CallLock lock;
      check(MPI_Ibcast(posted->send.get(), int(count), mpiType(type), root, comm_, &posted->request), "broadcast",
            "MPI_Ibcast");
    }
    wait(posted, "broadcast");
    if (bytes > 0) std::memcpy(data, posted->send.get(), bytes);
  }

  void doAllToAllV(const void* send, const Counts& sendCounts, void* recv, const Counts& recvCounts, ElemType type) override {
    int64_t sendTotal = 0, recvTotal = 0;
    for (int r = 0; r < size(); ++r) {
      sendTotal += sendCounts[size_t(r)];
      recvTotal += recvCounts[size_t(r)];
    }
    const size_t eb = elemBytes(type);
    auto posted = prepare("allToAllV", size_t(sendTotal) * eb, size_t(recvTotal) * eb);
    int sendOffset = 0, recvOffset = 0;
    for (int r = 0; r < size(); ++r) {
      posted->sendCounts.push_back(int(sendCounts[size_t(r)]));
      posted->sendDispls.push_back(sendOffset);
      posted->recvCounts.push_back(int(recvCounts[size_t(r)]));
      posted->recvDispls.push_back(recvOffset);
      sendOffset += int(sendCounts[size_t(r)]);
      recvOffset += int(recvCounts[size_t(r)]);
    }
    if (sendTotal > 0) std::memcpy(posted->send.get(), send, size_t(sendTotal) * eb);
    {
      CallLock lock;
      check(MPI_Ialltoallv(posted->send.get(), posted->sendCounts.data(), posted->sendDispls.data(), mpiType(type),
                           posted->recv.get(), posted->recvCounts.data(), posted->recvDispls.data(), mpiType(type), comm_,
                           &posted->request),
            "allToAllV", "MPI_Ialltoallv");
    }
    wait(posted, "allToAllV");
    if (recvTotal > 0) std::memcpy(recv, posted->recv.get(), size_t(recvTotal) * eb);
  }

  void doBarrier() override {
    auto posted = prepare("barrier", 0, 0);
    {
      CallLock lock;
      check(MPI_Ibarrier(comm_, &posted->request), "barrier", "MPI_Ibarrier");
    }
    wait(posted, "barrier");
  }

  // MPI_Comm_split blocks (MPI has no non-blocking split), but it runs only after split()'s
  // allGather, under the deadline, showed every rank here; a peer's notice ends it first.
  std::unique_ptr<Communicator> doSplit(int color, int key, int rank, int size) override {
    if (std::optional<std::string> notice = receiveNotice(comm_)) throw PeerFailure("split: " + *notice);
    MPI_Comm part = MPI_COMM_NULL;
    CallLock lock;
    check(MPI_Comm_split(comm_, color, key, &part), "split", "MPI_Comm_split");
    MPI_Comm_set_errhandler(part, MPI_ERRORS_RETURN);
    int partRank = 0, partSize = 0;
    MPI_Comm_rank(part, &partRank);
    MPI_Comm_size(part, &partSize);
    if (partRank != rank || partSize != size) {
      MPI_Comm_free(&part);
      throw Error(ErrorKind::Comm, "split: MPI_Comm_split placed this rank at " + std::to_string(partRank) + " of " +
                                       std::to_string(partSize) + ", expected " + std::to_string(rank) + " of " +
                                       std::to_string(size));
    }
    return std::make_unique<MpiCommunicator>(part, rank, size, timeoutMs());
  }

  void notifyPeers(const std::string& reason) override {
    try {
      auto text = std::make_shared<std::string>(reason);
      keepForever(text);  // MPI reads it until the sends complete
      CallLock lock;
      for (int peer = 0; peer < size(); ++peer) {
        if (peer == rank()) continue;
        MPI_Request request;
        if (MPI_Isend(text->data(), int(text->size()), MPI_CHAR, peer, kAbortTag, comm_, &request) == MPI_SUCCESS) {
          MPI_Request_free(&request);
        }
      }
    } catch (...) {
      // best effort: the peers still fail at their deadline
    }
  }

  void doClose() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    // A broken communicator may have collectives posted: it is left to MPI_Finalize.
    if (finalized || !failure().empty()) return;
    CallLock lock;
    MPI_Comm_free(&comm_);
  }

 private:
  // Staging for one collective, after checking for a peer's abort notice (a collective that the
  // peers abandoned is not posted).
  std::shared_ptr<Posted> prepare(const char* op, size_t sendBytes, size_t recvBytes) {
    if (std::optional<std::string> notice = receiveNotice(comm_)) throw PeerFailure(std::string(op) + ": " + *notice);
    return std::make_shared<Posted>(sendBytes, recvBytes);
  }

  void wait(const std::shared_ptr<Posted>& posted, const char* op) {
    waitFor(&posted->request, posted, comm_, timeoutMs(), op, "the other ranks");
  }

  MPI_Comm comm_;
};

}  // namespace

std::unique_ptr<Communicator> createMpiCommunicator(int64_t timeoutMs) {
  ensureInitialized();
  // The duplicate is written by MPI when the idup completes: heap memory that outlives a timeout.
  struct Dup {
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  auto dup = std::make_shared<Dup>();
  {
    CallLock lock;
    check(MPI_Comm_idup(MPI_COMM_WORLD, &dup->comm, &dup->request), "dist.init", "MPI_Comm_idup");
  }
  waitFor(&dup->request, dup, MPI_COMM_NULL, timeoutMs, "dist.init({backend: 'mpi'})",
          "every rank of the MPI job to call it");
  CallLock lock;
  MPI_Comm_set_errhandler(dup->comm, MPI_ERRORS_RETURN);
  int rank = 0, size = 0;
  MPI_Comm_rank(dup->comm, &rank);
  MPI_Comm_size(dup->comm, &size);
  return std::make_unique<MpiCommunicator>(dup->comm, rank, size, timeoutMs);
}

}  // namespace moekit::comm
