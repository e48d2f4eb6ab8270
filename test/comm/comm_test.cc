// The C++ communicator over MPI, run under mpirun (`mpirun -np N moekit_comm_test`) by
// test/dist.test.ts: every collective for each reducible element type (f32, f64, i32, i64) and
// the moved-only ones (u8, bf16 as raw bits), checked against values computed here; uneven
// allToAllV counts with zeros; the cross-rank agreement check; argument errors; abort notices.
//
// Every case runs on every rank in the same order. A failed expectation is recorded, not thrown,
// so the ranks stay in step; after each case the ranks sum their failures and rank 0 prints
// "PASS <case>" or "FAIL <case>" (details are printed by the rank that saw them). Exit status 1
// when any case failed anywhere.
//
// Exactness: the values are small integers, dyadic fractions or (f64) sums whose terms differ by
// 2^-40, all exact in the type that holds them, so results are compared with ==.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/backends.h"

using moekit::Error;
using moekit::ErrorKind;
using namespace moekit::comm;

namespace {

struct Suite {
  int rank = 0;
  int failures = 0;
  std::string current;
  void expect(bool ok, const std::string& what) {
    if (ok) return;
    ++failures;
    std::printf("detail rank %d, %s: %s\n", rank, current.c_str(), what.c_str());
    std::fflush(stdout);
  }
};

template <class T>
struct Traits;
template <>
struct Traits<float> {
  static constexpr ElemType type = ElemType::F32;
};
template <>
struct Traits<double> {
  static constexpr ElemType type = ElemType::F64;
};
template <>
struct Traits<int32_t> {
  static constexpr ElemType type = ElemType::I32;
};
template <>
struct Traits<int64_t> {
  static constexpr ElemType type = ElemType::I64;
};

// Element i of rank r's input: distinct per rank and element, negative for some, exact in T.
template <class T>
T value(int r, int64_t i) {
  return T((r + 1) * (i % 7 + 1)) - T(3 * (i % 2)) * T(r);
}

// The error kind a call throws (or "none").
std::string kindOf(const std::function<void()>& call, std::string* message = nullptr) {
  try {
    call();
  } catch (const Error& e) {
    if (message) *message = e.what();
    static constexpr const char* kNames[] = {"Shape", "DType", "Device", "Config", "Comm", "Disposed", "Format", "Argument"};
    return kNames[int(e.kind())];
  }
  return "none";
}

template <class T>
void reductions(Communicator& c, Suite& s) {
  const int n = c.size(), r = c.rank();
  const int64_t count = 37;
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
    if (op == ReduceOp::Avg && !isFloating(Traits<T>::type)) continue;
    std::vector<T> data(count);
    for (int64_t i = 0; i < count; ++i) data[size_t(i)] = value<T>(r, i);
    c.allReduce(data.data(), count, Traits<T>::type, op);
    for (int64_t i = 0; i < count; ++i) {
      T want = op == ReduceOp::Max ? value<T>(0, i) : T(0);
      for (int q = 0; q < n; ++q) want = op == ReduceOp::Max ? std::max(want, value<T>(q, i)) : T(want + value<T>(q, i));
      if (op == ReduceOp::Avg) want = T(want / T(n));
      s.expect(data[size_t(i)] == want, std::string("allReduce ") + opName(op) + " element " + std::to_string(i));
    }
    // reduceScatter: rank r gets block r of the reduction over size·count elements
    std::vector<T> send(static_cast<size_t>(count * n)), recv(static_cast<size_t>(count));
    for (int64_t i = 0; i < count * n; ++i) send[size_t(i)] = value<T>(r, i);
    c.reduceScatter(send.data(), recv.data(), count, Traits<T>::type, op);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t j = r * count + i;
      T want = op == ReduceOp::Max ? value<T>(0, j) : T(0);
      for (int q = 0; q < n; ++q) want = op == ReduceOp::Max ? std::max(want, value<T>(q, j)) : T(want + value<T>(q, j));
      if (op == ReduceOp::Avg) want = T(want / T(n));
      s.expect(recv[size_t(i)] == want, std::string("reduceScatter ") + opName(op) + " element " + std::to_string(i));
    }
  }
}

template <class T>
void movement(Communicator& c, Suite& s, ElemType type) {
  const int n = c.size(), r = c.rank();
  // allGather
  const int64_t count = 5;
  std::vector<T> mine(static_cast<size_t>(count)), all(static_cast<size_t>(count * n));
  for (int64_t i = 0; i < count; ++i) mine[size_t(i)] = T(r * 16 + i);
  c.allGather(mine.data(), all.data(), count, type);
  for (int q = 0; q < n; ++q) {
    for (int64_t i = 0; i < count; ++i) s.expect(all[size_t(q * count + i)] == T(q * 16 + i), "allGather block " + std::to_string(q));
  }
  // broadcast from every root
  for (int root = 0; root < n; ++root) {
    std::vector<T> data(count);
    for (int64_t i = 0; i < count; ++i) data[size_t(i)] = T(r == root ? 40 + root * 5 + i : 0);
    c.broadcast(data.data(), count, type, root);
    for (int64_t i = 0; i < count; ++i) s.expect(data[size_t(i)] == T(40 + root * 5 + i), "broadcast root " + std::to_string(root));
  }
  // allToAllV: rank r sends (r + 2p) mod 3 elements to rank p (zeros included), element j of that
  // block = 100·r + 10·p + j (mod the type's range for u8)
  Counts sendCounts(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) sendCounts[size_t(p)] = (r + 2 * p) % 3;
  std::vector<T> send;
  for (int p = 0; p < n; ++p) {
    for (int64_t j = 0; j < sendCounts[size_t(p)]; ++j) send.push_back(T(100 * r + 10 * p + j));
  }
  const Counts recvCounts = c.exchangeCounts(sendCounts);
  int64_t total = 0;
  for (int q = 0; q < n; ++q) {
    s.expect(recvCounts[size_t(q)] == (q + 2 * r) % 3, "exchangeCounts from rank " + std::to_string(q));
    total += recvCounts[size_t(q)];
  }
  std::vector<T> recv(size_t(total) + 1);
  c.allToAllV(send.data(), sendCounts, recv.data(), recvCounts, type);
  size_t at = 0;
  for (int q = 0; q < n; ++q) {
    for (int64_t j = 0; j < recvCounts[size_t(q)]; ++j, ++at) {
      s.expect(recv[at] == T(100 * q + 10 * r + j), "allToAllV element " + std::to_string(j) + " from rank " + std::to_string(q));
    }
  }
}

void int64Range(Communicator& c, Suite& s) {
  // beyond 2^53: a sum that only a real 64-bit integer path keeps exact (no overflow up to 256 ranks)
  const int64_t big = int64_t(1) << 55;
  int64_t data[2] = {big + c.rank(), -big};
  c.allReduce(data, 2, ElemType::I64, ReduceOp::Sum);
  const int64_t n = c.size();
  s.expect(data[0] == n * big + n * (n - 1) / 2, "i64 sum beyond 2^53");
  s.expect(data[1] == -n * big, "i64 negative sum");
  int64_t m = big + c.rank();
  c.allReduce(&m, 1, ElemType::I64, ReduceOp::Max);
  s.expect(m == big + n - 1, "i64 max beyond 2^53");
}

void float64Precision(Communicator& c, Suite& s) {
  // 1 + (r+1)·2^-40 summed: exact in f64, lost in f32
  double x = 1.0 + double(c.rank() + 1) * 0x1p-40;
  c.allReduce(&x, 1, ElemType::F64, ReduceOp::Sum);
  const int n = c.size();
  s.expect(x == double(n) + double(n * (n + 1) / 2) * 0x1p-40, "f64 keeps 2^-40");
}

void agreement(Communicator& c, Suite& s) {
  if (c.size() == 1) return;  // one rank cannot disagree with itself
  std::string message;
  s.expect(kindOf([&] { c.checkAgreement("allReduce", 4 + c.rank(), ElemType::F32, "op", 0); }, &message) == "Shape",
           "differing element counts → Shape");
  s.expect(message.find("between 4 and " + std::to_string(3 + c.size())) != std::string::npos, "message names the range: " + message);
  s.expect(kindOf([&] { c.checkAgreement("allGather", 4, c.rank() == 0 ? ElemType::F32 : ElemType::I32, "", 0); }) == "DType",
           "differing types → DType");
  s.expect(kindOf([&] { c.checkAgreement("broadcast", 4, ElemType::F32, "root", c.rank() % 2); }) == "Argument",
           "differing roots → Argument");
  s.expect(kindOf([&] { c.checkAgreement("broadcast", 4, ElemType::F32, "root", 1); }) == "none", "agreeing ranks pass");
  s.expect(kindOf([&] { c.barrier(); }) == "none", "the communicator stays usable");
}

void argumentErrors(Communicator& c, Suite& s) {
  uint8_t bytes[4] = {};
  int32_t ints[4] = {};
  float floats[4] = {};
  const int n = c.size();
  s.expect(kindOf([&] { c.allReduce(bytes, 4, ElemType::U8, ReduceOp::Sum); }) == "DType", "u8 is not reducible");
  s.expect(kindOf([&] { c.allReduce(ints, 4, ElemType::I32, ReduceOp::Avg); }) == "DType", "avg needs a float type");
  s.expect(kindOf([&] { c.allReduce(nullptr, 4, ElemType::F32, ReduceOp::Sum); }) == "Argument", "null buffer");
  s.expect(kindOf([&] { c.allReduce(floats, -1, ElemType::F32, ReduceOp::Sum); }) == "Shape", "negative count");
  s.expect(kindOf([&] { c.broadcast(floats, 4, ElemType::F32, n); }) == "Argument", "root out of range");
  s.expect(kindOf([&] { c.allReduce(floats, 4, ElemType(42), ReduceOp::Sum); }) == "DType", "unknown type code");
  s.expect(kindOf([&] { c.exchangeCounts(Counts(size_t(n + 1), 0)); }) == "Shape", "one count per rank");
  Counts counts(size_t(n), 1), wrongSelf(size_t(n), 1);
  wrongSelf[size_t(c.rank())] = 0;
  s.expect(kindOf([&] { c.allToAllV(floats, counts, floats, wrongSelf, ElemType::F32); }) == "Shape",
           "recvCounts[rank] must equal sendCounts[rank]");
  s.expect(kindOf([&] { c.barrier(); }) == "none", "argument errors leave the communicator usable");
}

void abortNotice(Suite& s) {
  std::unique_ptr<Communicator> c = createMpiCommunicator(20000);
  const int last = c->size() - 1;
  if (c->size() == 1) return;
  std::string message;
  if (c->rank() == last) {
    c->abort("the test aborts");
    s.expect(kindOf([&] { c->barrier(); }, &message) == "Comm", "the aborting rank's communicator is broken");
    s.expect(message.find("broken") != std::string::npos, "says broken: " + message);
  } else {
    s.expect(kindOf([&] { c->barrier(); }, &message) == "Comm", "a peer's abort fails the barrier");
    s.expect(message.find("rank " + std::to_string(last) + " aborted the communicator: the test aborts") != std::string::npos,
             "names the rank and the reason: " + message);
  }
  c->close();
  s.expect(kindOf([&] { c->barrier(); }) == "Disposed", "closed → Disposed");
}

}  // namespace

int main() {
  std::unique_ptr<Communicator> c = createMpiCommunicator(20000);
  Suite suite;
  suite.rank = c->rank();
  const std::vector<std::pair<std::string, std::function<void()>>> cases = {
      {"f32 reductions", [&] { reductions<float>(*c, suite); }},
      {"f64 reductions", [&] { reductions<double>(*c, suite); }},
      {"i32 reductions", [&] { reductions<int32_t>(*c, suite); }},
      {"i64 reductions", [&] { reductions<int64_t>(*c, suite); }},
      {"f32 allGather broadcast allToAllV", [&] { movement<float>(*c, suite, ElemType::F32); }},
      {"f64 allGather broadcast allToAllV", [&] { movement<double>(*c, suite, ElemType::F64); }},
      {"i32 allGather broadcast allToAllV", [&] { movement<int32_t>(*c, suite, ElemType::I32); }},
      {"i64 allGather broadcast allToAllV", [&] { movement<int64_t>(*c, suite, ElemType::I64); }},
      {"u8 allGather broadcast allToAllV", [&] { movement<uint8_t>(*c, suite, ElemType::U8); }},
      {"bf16 bits allGather broadcast allToAllV", [&] { movement<uint16_t>(*c, suite, ElemType::BF16); }},
      {"i64 beyond 2^53", [&] { int64Range(*c, suite); }},
      {"f64 precision", [&] { float64Precision(*c, suite); }},
      {"ranks that disagree get the same typed error", [&] { agreement(*c, suite); }},
      {"argument errors", [&] { argumentErrors(*c, suite); }},
      {"abort notices", [&] { abortNotice(suite); }},
  };
  int failedCases = 0;
  for (const auto& [name, body] : cases) {
    suite.current = name;
    const int before = suite.failures;
    try {
      body();
    } catch (const std::exception& e) {
      suite.expect(false, std::string("threw: ") + e.what());
    }
    int32_t failed = suite.failures - before;
    c->allReduce(&failed, 1, ElemType::I32, ReduceOp::Sum);
    if (failed > 0) ++failedCases;
    if (c->rank() == 0) std::printf("%s %s\n", failed > 0 ? "FAIL" : "PASS", name.c_str());
    std::fflush(stdout);
  }
  c->close();
  return failedCases > 0 ? 1 : 0;
}
