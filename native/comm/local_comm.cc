// The local backend: a communicator of one rank. Reductions over one rank are the identity (avg
// divides by 1), so every collective is a copy from the send buffer to the receive buffer, and
// split gives another one-rank communicator.
#include <cstring>

#include "backends.h"

namespace moekit::comm {

namespace {

class LocalCommunicator final : public Communicator {
 public:
  explicit LocalCommunicator(int64_t timeoutMs) : Communicator(0, 1, timeoutMs) {}
  const char* backend() const override { return "local"; }

 protected:
  void doAllReduce(void*, int64_t, ElemType, ReduceOp) override {}
  void doAllGather(const void* send, void* recv, int64_t count, ElemType type) override { copy(send, recv, count, type); }
  void doReduceScatter(const void* send, void* recv, int64_t count, ElemType type, ReduceOp) override {
    copy(send, recv, count, type);
  }
  void doBroadcast(void*, int64_t, ElemType, int) override {}
  void doAllToAllV(const void* send, const Counts& sendCounts, void* recv, const Counts&, ElemType type) override {
    copy(send, recv, sendCounts[0], type);
  }
  void doBarrier() override {}
  // One rank splits into itself, whatever the color.
  std::unique_ptr<Communicator> doSplit(int, int, int, int) override {
    return std::make_unique<LocalCommunicator>(timeoutMs());
  }
  void notifyPeers(const std::string&) override {}
  void doClose() override {}

 private:
  static void copy(const void* send, void* recv, int64_t count, ElemType type) {
    if (count > 0 && send != recv) std::memmove(recv, send, size_t(count) * elemBytes(type));
  }
};

}  // namespace

std::unique_ptr<Communicator> createLocalCommunicator(int64_t timeoutMs) {
  return std::make_unique<LocalCommunicator>(timeoutMs);
}

}  // namespace moekit::comm
