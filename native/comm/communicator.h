// Communicator: the collectives of DESIGN §2 (dist.*) over raw buffers, one interface for every
// backend — local (one rank, local_comm.cc), MPI (CPU, mpi_comm.cc) and NCCL (GPU, dlopen'd,
// nccl_comm.cc). The parallel MoE layer calls it directly; native/addon/comm.cc exposes it to
// JavaScript.
//
// Buffers. Counts are in elements of `type`. Send and receive buffers must not overlap unless a
// method says "in place". MPI and local take host memory; NCCL takes device memory and stages
// host memory through the device.
//
//   allReduce(data, n)             in place: data[i] = op over ranks of data[i]
//   allGather(send, recv, n)       recv[r·n + i] = send[i] of rank r             (recv: size·n)
//   reduceScatter(send, recv, n)   recv[i] = op over ranks of send[rank·n + i]   (send: size·n)
//   broadcast(data, n, root)       in place: data = root's data
//   allToAllV(send, sendCounts, recv, recvCounts)
//                                  send holds sendCounts[0] elements for rank 0, then
//                                  sendCounts[1] for rank 1, …; recv receives recvCounts[r]
//                                  elements from rank r, in rank order. recvCounts[r] must equal
//                                  rank r's sendCounts[this rank]: exchangeCounts computes it.
//
// Every rank calls the same collectives in the same order with the same counts, type, op and
// root; checkAgreement turns a disagreement into the same typed error on every rank instead of
// undefined behaviour.
//
// Failure (one rank throws, dies or stops calling collectives). Every collective of the MPI and
// NCCL backends waits against a deadline (the communicator's timeout: MOEKIT_COMM_TIMEOUT_MS,
// default 600000 ms, or the timeout given at creation). A rank whose collective fails — timed out,
// an MPI/NCCL error, or an abort notice from a peer — throws Error(Comm) and the communicator is
// broken from then on: every later call throws Error(Comm) naming the first failure, and the rank
// tells its peers (an abort notice), so they fail at once instead of waiting out their own
// deadline. abort(reason) breaks the communicator on purpose and sends the notice. Argument
// errors are thrown before anything is sent and leave the communicator usable. After close()
// every call throws Error(Disposed).
//
// Splitting. split(color, key) is collective: every rank of the communicator calls it. The ranks
// passing the same color form a new communicator, ranked by (key, rank here). It first gathers
// every rank's (color, key) under the deadline, so a color < 0 on any rank throws the same
// Error(Argument) on every rank (naming the rank) and leaves the communicator usable; then the
// backend builds the new communicator (MPI: MPI_Comm_split, NCCL: ncclCommSplit, local: one
// rank). The new one has the parent's backend, timeout and failure semantics, its own abort
// notices, and lives independently of the parent (closing either leaves the other usable).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../core/errors.h"

namespace moekit::comm {

// The element types a collective moves. Reductions take F32, F64, I32 and I64 (avg: F32 and F64);
// allGather, broadcast and allToAllV move every type as opaque elements.
enum class ElemType : int32_t { F32, F64, I32, I64, U8, BF16, F16, E4M3, E5M2 };

enum class ReduceOp : int32_t { Sum, Avg, Max };

size_t elemBytes(ElemType type);
const char* elemName(ElemType type);
const char* opName(ReduceOp op);
bool isReducible(ElemType type);
bool isFloating(ElemType type);
// The element type of a moekit tensor dtype (every DType has one).
ElemType elemTypeOf(DType dtype);

// One count per rank, in elements.
using Counts = std::vector<int64_t>;

// The default collective deadline: MOEKIT_COMM_TIMEOUT_MS when set (a positive integer; anything
// else throws Error(Argument) naming the variable), else 600000.
int64_t defaultTimeoutMs();

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int64_t timeoutMs() const { return timeoutMs_; }
  virtual const char* backend() const = 0;
  bool closed() const { return closed_; }
  // The first failure's message, empty while the communicator is healthy.
  const std::string& failure() const { return failure_; }

  void allReduce(void* data, int64_t count, ElemType type, ReduceOp op);
  void allGather(const void* send, void* recv, int64_t count, ElemType type);
  void reduceScatter(const void* send, void* recv, int64_t count, ElemType type, ReduceOp op);
  void broadcast(void* data, int64_t count, ElemType type, int root);
  void allToAllV(const void* send, const Counts& sendCounts, void* recv, const Counts& recvCounts, ElemType type);
  // recvCounts for allToAllV: element r is what rank r sends to this rank.
  Counts exchangeCounts(const Counts& sendCounts);
  void barrier();
  // A new communicator over the ranks with this color (see "Splitting"); collective.
  std::unique_ptr<Communicator> split(int color, int key);

  // What each rank passes to collective `op`: every rank must pass the same values. One small
  // allReduce; a mismatch throws on every rank alike — Error(Shape) for `elements`,
  // Error(DType) for `type`, Error(Argument) for `detail` (named `detailName`: a root, an op
  // code; 0 when the collective has none) — and leaves the communicator usable.
  void checkAgreement(const char* op, int64_t elements, ElemType type, const char* detailName, int64_t detail);

  // Breaks the communicator and tells the peers (their pending and later collectives fail with
  // Error(Comm) naming this rank and `reason`). Idempotent; a no-op once closed.
  void abort(const std::string& reason);
  // Releases the backend's resources. Local: no peer is contacted. Idempotent.
  void close();

 protected:
  Communicator(int rank, int size, int64_t timeoutMs);

  virtual void doAllReduce(void* data, int64_t count, ElemType type, ReduceOp op) = 0;
  virtual void doAllGather(const void* send, void* recv, int64_t count, ElemType type) = 0;
  virtual void doReduceScatter(const void* send, void* recv, int64_t count, ElemType type, ReduceOp op) = 0;
  virtual void doBroadcast(void* data, int64_t count, ElemType type, int root) = 0;
  virtual void doAllToAllV(const void* send, const Counts& sendCounts, void* recv, const Counts& recvCounts,
                           ElemType type) = 0;
  virtual void doBarrier() = 0;
  // The backend's new communicator for split(): every rank calls it after the arguments were
  // checked, and `rank` of `size` is where this rank lands (from the gathered colors and keys).
  virtual std::unique_ptr<Communicator> doSplit(int color, int key, int rank, int size) = 0;
  // Throws Error(Comm) before anything is sent when the backend cannot split (NCCL before 2.18).
  virtual void checkSplit() const {}
  // Best effort, never throws: tells every peer that this communicator failed here.
  virtual void notifyPeers(const std::string& reason) = 0;
  virtual void doClose() = 0;

 private:
  // Runs a backend call: refuses when closed or broken; any exception breaks the communicator
  // (and notifies the peers unless the failure is itself a peer's notice) and propagates.
  template <class Body>
  void run(const char* op, Body&& body);
  void checkUsable(const char* op) const;

  int rank_;
  int size_;
  int64_t timeoutMs_;
  bool closed_ = false;
  std::string failure_;
};

// Error(Comm) thrown by a backend when a peer's abort notice ends a collective: the peers
// already know, so no notice is sent back.
class PeerFailure : public Error {
 public:
  explicit PeerFailure(const std::string& message) : Error(ErrorKind::Comm, message) {}
};

}  // namespace moekit::comm
