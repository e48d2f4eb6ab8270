#include "communicator.h"

#include <cerrno>
#include <cstdlib>
#include <exception>
#include <vector>

#include "../core/shape.h"

namespace moekit::comm {

size_t elemBytes(ElemType type) {
  switch (type) {
    case ElemType::F64:
    case ElemType::I64: return 8;
    case ElemType::F32:
    case ElemType::I32: return 4;
    case ElemType::BF16:
    case ElemType::F16: return 2;
    default: return 1;
  }
}

const char* elemName(ElemType type) {
  static constexpr const char* kNames[] = {"f32", "f64", "i32", "i64", "u8", "bf16", "f16", "e4m3", "e5m2"};
  const int32_t code = int32_t(type);
  return code >= 0 && code < int32_t(sizeof kNames / sizeof kNames[0]) ? kNames[code] : "?";
}

const char* opName(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

bool isReducible(ElemType type) {
  return type == ElemType::F32 || type == ElemType::F64 || type == ElemType::I32 || type == ElemType::I64;
}

bool isFloating(ElemType type) { return type == ElemType::F32 || type == ElemType::F64; }

ElemType elemTypeOf(DType dtype) {
  switch (dtype) {
    case DType::F32: return ElemType::F32;
    case DType::BF16: return ElemType::BF16;
    case DType::F16: return ElemType::F16;
    case DType::I32: return ElemType::I32;
    case DType::U8: return ElemType::U8;
    case DType::E4M3: return ElemType::E4M3;
    case DType::E5M2: return ElemType::E5M2;
  }
  throw Error(ErrorKind::DType, std::string("dtype ") + dtypeName(dtype) + " has no communication type");
}

int64_t defaultTimeoutMs() {
  constexpr int64_t kDefault = 600000;
  const char* text = std::getenv("MOEKIT_COMM_TIMEOUT_MS");
  if (text == nullptr) return kDefault;
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 1 || value > kMaxElements) {
    throw Error(ErrorKind::Argument, std::string("MOEKIT_COMM_TIMEOUT_MS: expected an integer number of milliseconds in "
                                                 "[1, 2147483647], got \"") + text + "\"");
  }
  return value;
}

namespace {

std::string str(int64_t v) { return std::to_string(v); }

void checkType(const char* op, ElemType type) {
  if (int32_t(type) < 0 || int32_t(type) > int32_t(ElemType::E5M2)) {
    throw Error(ErrorKind::DType, std::string(op) + ": type: expected an element type code in [0, 8], got " + str(int32_t(type)));
  }
}

void checkReduction(const char* op, ElemType type, ReduceOp reduce) {
  checkType(op, type);
  if (int32_t(reduce) < 0 || int32_t(reduce) > int32_t(ReduceOp::Max)) {
    throw Error(ErrorKind::Argument, std::string(op) + ": op: expected sum, avg or max, got code " + str(int32_t(reduce)));
  }
  if (!isReducible(type)) {
    throw Error(ErrorKind::DType, std::string(op) + ": type: a reduction takes f32, f64, i32 or i64, got " + elemName(type));
  }
  if (reduce == ReduceOp::Avg && !isFloating(type)) {
    throw Error(ErrorKind::DType, std::string(op) + ": type: avg takes f32 or f64, got " + elemName(type));
  }
}

// count elements, and count·factor (a whole buffer), within one tensor's limit.
void checkCount(const char* op, const char* name, int64_t count, int64_t factor) {
  if (count < 0 || count > kMaxElements / factor) {
    throw Error(ErrorKind::Shape, std::string(op) + ": " + name + ": expected an element count in [0, " +
                                      str(kMaxElements / factor) + "], got " + str(count));
  }
}

void checkBuffer(const char* op, const char* name, const void* data, int64_t count) {
  if (data == nullptr && count > 0) {
    throw Error(ErrorKind::Argument, std::string(op) + ": " + name + ": expected a buffer of " + str(count) +
                                         " elements, got a null pointer");
  }
}

int64_t checkCounts(const char* op, const char* name, const Counts& counts, int size) {
  if (counts.size() != size_t(size)) {
    throw Error(ErrorKind::Shape, std::string(op) + ": " + name + ": expected one count per rank (" + str(size) +
                                      "), got " + str(int64_t(counts.size())));
  }
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    if (counts[r] < 0 || counts[r] > kMaxElements - total) {
      throw Error(ErrorKind::Shape, std::string(op) + ": " + name + "[" + str(int64_t(r)) +
                                        "]: expected a count ≥ 0 with a total of at most 2147483647, got " + str(counts[r]));
    }
    total += counts[r];
  }
  return total;
}

}  // namespace

Communicator::Communicator(int rank, int size, int64_t timeoutMs) : rank_(rank), size_(size), timeoutMs_(timeoutMs) {}

void Communicator::checkUsable(const char* op) const {
  if (closed_) throw Error(ErrorKind::Disposed, std::string(op) + ": the communicator was closed");
  if (!failure_.empty()) {
    throw Error(ErrorKind::Comm, std::string(op) + ": the communicator is broken by an earlier failure: " + failure_);
  }
}

template <class Body>
void Communicator::run(const char* op, Body&& body) {
  checkUsable(op);
  try {
    body();
  } catch (const PeerFailure& e) {
    failure_ = e.what();
    throw;
  } catch (const std::exception& e) {
    failure_ = e.what();
    notifyPeers("rank " + str(rank_) + " failed in " + op + ": " + e.what());
    throw;
  }
}

void Communicator::allReduce(void* data, int64_t count, ElemType type, ReduceOp op) {
  checkUsable("allReduce");
  checkReduction("allReduce", type, op);
  checkCount("allReduce", "count", count, 1);
  checkBuffer("allReduce", "data", data, count);
  run("allReduce", [&] { doAllReduce(data, count, type, op); });
}

void Communicator::allGather(const void* send, void* recv, int64_t count, ElemType type) {
  checkUsable("allGather");
  checkType("allGather", type);
  checkCount("allGather", "count", count, size_);
  checkBuffer("allGather", "send", send, count);
  checkBuffer("allGather", "recv", recv, count * size_);
  run("allGather", [&] { doAllGather(send, recv, count, type); });
}

void Communicator::reduceScatter(const void* send, void* recv, int64_t count, ElemType type, ReduceOp op) {
  checkUsable("reduceScatter");
  checkReduction("reduceScatter", type, op);
  checkCount("reduceScatter", "count", count, size_);
  checkBuffer("reduceScatter", "send", send, count * size_);
  checkBuffer("reduceScatter", "recv", recv, count);
  run("reduceScatter", [&] { doReduceScatter(send, recv, count, type, op); });
}

void Communicator::broadcast(void* data, int64_t count, ElemType type, int root) {
  checkUsable("broadcast");
  checkType("broadcast", type);
  checkCount("broadcast", "count", count, 1);
  checkBuffer("broadcast", "data", data, count);
  if (root < 0 || root >= size_) {
    throw Error(ErrorKind::Argument, "broadcast: root: expected a rank in [0, " + str(size_ - 1) + "], got " + str(root));
  }
  run("broadcast", [&] { doBroadcast(data, count, type, root); });
}

void Communicator::allToAllV(const void* send, const Counts& sendCounts, void* recv, const Counts& recvCounts,
                             ElemType type) {
  checkUsable("allToAllV");
  checkType("allToAllV", type);
  checkBuffer("allToAllV", "send", send, checkCounts("allToAllV", "sendCounts", sendCounts, size_));
  checkBuffer("allToAllV", "recv", recv, checkCounts("allToAllV", "recvCounts", recvCounts, size_));
  if (recvCounts[size_t(rank_)] != sendCounts[size_t(rank_)]) {
    throw Error(ErrorKind::Shape, "allToAllV: recvCounts[" + str(rank_) + "]: expected sendCounts[" + str(rank_) +
                                      "] = " + str(sendCounts[size_t(rank_)]) + " (what this rank sends itself), got " +
                                      str(recvCounts[size_t(rank_)]));
  }
  run("allToAllV", [&] { doAllToAllV(send, sendCounts, recv, recvCounts, type); });
}

Counts Communicator::exchangeCounts(const Counts& sendCounts) {
  checkUsable("exchangeCounts");
  checkCounts("exchangeCounts", "sendCounts", sendCounts, size_);
  const Counts ones(size_t(size_), 1);
  Counts recvCounts(size_t(size_), 0);
  run("exchangeCounts", [&] { doAllToAllV(sendCounts.data(), ones, recvCounts.data(), ones, ElemType::I64); });
  return recvCounts;
}

void Communicator::barrier() { run("barrier", [&] { doBarrier(); }); }

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  checkUsable("split");
  checkSplit();
  // Every rank's (color, key), so that a bad color fails alike everywhere and each rank knows
  // where it lands before the backend is asked.
  const int64_t mine[2] = {color, key};
  std::vector<int64_t> table(size_t(2 * size_));
  run("split", [&] { doAllGather(mine, table.data(), 2, ElemType::I64); });
  for (int r = 0; r < size_; ++r) {
    if (table[size_t(2 * r)] < 0) {
      throw Error(ErrorKind::Argument, "split: color: expected an integer ≥ 0 on every rank, got " +
                                           str(table[size_t(2 * r)]) + " on rank " + str(r) + " (this rank " + str(color) + ")");
    }
  }
  // New rank: the ranks of this color ordered by (key, old rank).
  int newRank = 0, newSize = 0;
  for (int r = 0; r < size_; ++r) {
    if (table[size_t(2 * r)] != color) continue;
    ++newSize;
    const int64_t k = table[size_t(2 * r + 1)];
    if (k < key || (k == key && r < rank_)) ++newRank;
  }
  std::unique_ptr<Communicator> out;
  run("split", [&] { out = doSplit(color, key, newRank, newSize); });
  return out;
}

void Communicator::checkAgreement(const char* op, int64_t elements, ElemType type, const char* detailName, int64_t detail) {
  checkUsable(op);
  // max over ranks of v and of −v gives the largest and the smallest value of each entry at once
  int64_t values[6] = {elements, -elements, int64_t(type), -int64_t(type), detail, -detail};
  run(op, [&] { doAllReduce(values, 6, ElemType::I64, ReduceOp::Max); });
  const std::string prefix = std::string(op) + ": the ranks disagree: ";
  if (values[0] != -values[1]) {
    throw Error(ErrorKind::Shape, prefix + "they pass between " + str(-values[1]) + " and " + str(values[0]) +
                                      " elements (this rank " + str(elements) + "); every rank must pass the same number");
  }
  if (values[2] != -values[3]) {
    throw Error(ErrorKind::DType, prefix + "they pass elements of " + elemName(ElemType(-values[3])) + " and of " +
                                      elemName(ElemType(values[2])) + " (this rank " + elemName(type) +
                                      "); every rank must pass the same dtype");
  }
  if (values[4] != -values[5]) {
    throw Error(ErrorKind::Argument, prefix + "they pass different " + detailName + " values (between " +
                                         str(-values[5]) + " and " + str(values[4]) + ", this rank " + str(detail) + ")");
  }
}

void Communicator::abort(const std::string& reason) {
  if (closed_ || !failure_.empty()) return;
  failure_ = "aborted on rank " + str(rank_) + ": " + reason;
  notifyPeers("rank " + str(rank_) + " aborted the communicator: " + reason);
}

void Communicator::close() {
  if (closed_) return;
  closed_ = true;
  doClose();
}

}  // namespace moekit::comm
