#include "row_exchange.h"

#include <cstring>
#include <string>

#include "../core/errors.h"

namespace moekit {

namespace {

// Words in front of each row while dispatch() plans: its destination rank.
constexpr int kHeader = 1;

std::string str(int64_t v) { return std::to_string(v); }

// out[i] = rows[order[i]] for rows of `width` words.
void gatherRows(const std::vector<uint32_t>& rows, const std::vector<int32_t>& order, int width,
                std::vector<uint32_t>& out) {
  out.resize(order.size() * size_t(width));
  for (size_t i = 0; i < order.size(); ++i)
    std::memcpy(&out[i * width], &rows[size_t(order[i]) * width], size_t(width) * sizeof(uint32_t));
}

}  // namespace

RowExchange::RowExchange(comm::Communicator& comm, int ranksPerNode)
    : comm_(comm), nodeRanks_(ranksPerNode), messages_(size_t(comm.size()), 0), bytes_(size_t(comm.size()), 0) {
  if (ranksPerNode < 0 || (ranksPerNode > 0 && comm.size() % ranksPerNode != 0))
    throw Error(ErrorKind::Config, "parallel.ranksPerNode: expected a divisor of the expert-parallel size " +
                                       str(comm.size()) + ", got " + str(ranksPerNode));
}

bool RowExchange::isPeer(int hop, int rank) const {
  if (hops() == 1) return true;
  const int self = comm_.rank();
  return hop == 0 ? rank / nodeRanks_ == self / nodeRanks_ : rank % nodeRanks_ == self % nodeRanks_;
}

int RowExchange::target(int hop, int dest) const {
  if (hops() == 1 || hop == 1) return dest;
  return comm_.rank() / nodeRanks_ * nodeRanks_ + dest % nodeRanks_;  // same node, dest's local index
}

void RowExchange::checkWidth(int width, const char* op) const {
  if (width < 1) throw Error(ErrorKind::Argument, std::string("RowExchange.") + op + ": width: expected ≥ 1, got " + str(width));
}

// recv[p] = what peer p sends this rank in `hop` (0 for non-peers): one count to each peer.
comm::Counts RowExchange::exchangeCounts(int hop, const comm::Counts& send) {
  const int P = comm_.size(), self = comm_.rank();
  comm::Counts ones(size_t(P), 0), values;
  for (int p = 0; p < P; ++p) {
    if (!isPeer(hop, p)) continue;
    ones[size_t(p)] = 1;
    values.push_back(send[size_t(p)]);
    if (p != self) {
      ++messages_[size_t(p)];
      bytes_[size_t(p)] += int64_t(sizeof(int64_t));
    }
  }
  comm::Counts got(values.size(), 0);
  comm_.allToAllV(values.data(), ones, got.data(), ones, comm::ElemType::I64);
  comm::Counts recv(size_t(P), 0);
  for (int p = 0, i = 0; p < P; ++p)
    if (isPeer(hop, p)) {
      if (got[size_t(i)] < 0) throw Error(ErrorKind::Comm, "RowExchange: rank " + str(p) + " announced " + str(got[size_t(i)]) + " rows");
      recv[size_t(p)] = got[size_t(i++)];
    }
  return recv;
}

void RowExchange::allToAll(const std::vector<uint32_t>& send, const comm::Counts& sendRows, std::vector<uint32_t>& recv,
                           const comm::Counts& recvRows, int width) {
  const int P = comm_.size();
  comm::Counts sendWords(static_cast<size_t>(P)), recvWords(static_cast<size_t>(P));
  int64_t total = 0;
  for (int p = 0; p < P; ++p) {
    sendWords[size_t(p)] = sendRows[size_t(p)] * width;
    recvWords[size_t(p)] = recvRows[size_t(p)] * width;
    total += recvWords[size_t(p)];
    if (p != comm_.rank() && sendRows[size_t(p)] > 0) {
      ++messages_[size_t(p)];
      bytes_[size_t(p)] += sendWords[size_t(p)] * int64_t(sizeof(uint32_t));
    }
  }
  recv.resize(size_t(total));
  comm_.allToAllV(send.data(), sendWords, recv.data(), recvWords, comm::ElemType::I32);
}

void RowExchange::dispatch(const int32_t* dest, int n, const uint32_t* rows, int width, std::vector<uint32_t>& out) {
  checkWidth(width, "dispatch");
  const int P = comm_.size(), self = comm_.rank(), stride = width + kHeader;
  if (n < 0) throw Error(ErrorKind::Shape, "RowExchange.dispatch: n: expected ≥ 0, got " + str(n));
  for (int i = 0; i < n; ++i)
    if (dest[i] < 0 || dest[i] >= P)
      throw Error(ErrorKind::Argument, "RowExchange.dispatch: dest[" + str(i) + "]: expected a rank in [0, " + str(P - 1) +
                                           "], got " + str(dest[i]));
  plan_.clear();
  rows_ = n;
  received_ = 0;
  // Rows with their header; each hop regroups them by target and replaces them with what arrives.
  std::vector<uint32_t>& current = buffer_;
  current.resize(size_t(n) * stride);
  for (int i = 0; i < n; ++i) {
    uint32_t* row = &current[size_t(i) * stride];
    row[0] = uint32_t(dest[i]);
    std::memcpy(row + kHeader, rows + size_t(i) * width, size_t(width) * sizeof(uint32_t));
  }
  int64_t count = n;
  for (int hop = 0; hop < hops(); ++hop) {
    Hop h;
    h.send.assign(size_t(P), 0);
    std::vector<int32_t> to(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      to[size_t(i)] = target(hop, int32_t(current[size_t(i) * stride]));
      ++h.send[size_t(to[size_t(i)])];
    }
    // Stable counting sort by target: rows keep their order within each target's block.
    std::vector<int64_t> at(size_t(P) + 1, 0);
    for (int p = 0; p < P; ++p) at[size_t(p) + 1] = at[size_t(p)] + h.send[size_t(p)];
    h.order.resize(size_t(count));
    for (int64_t i = 0; i < count; ++i) h.order[size_t(at[size_t(to[size_t(i)])]++)] = int32_t(i);
    h.recv = exchangeCounts(hop, h.send);
    gatherRows(current, h.order, stride, staging_);
    allToAll(staging_, h.send, current, h.recv, stride);
    count = int64_t(current.size()) / stride;
    plan_.push_back(std::move(h));
  }
  for (int64_t i = 0; i < count; ++i)
    if (int32_t(current[size_t(i) * stride]) != self)
      throw Error(ErrorKind::Comm, "RowExchange.dispatch: received a row bound for rank " +
                                       str(int32_t(current[size_t(i) * stride])) + " (the ranks disagree on the plan)");
  received_ = int(count);
  out.resize(size_t(count) * width);
  for (int64_t i = 0; i < count; ++i)
    std::memcpy(&out[size_t(i) * width], &current[size_t(i) * stride + kHeader], size_t(width) * sizeof(uint32_t));
}

void RowExchange::forward(const uint32_t* rows, int width, std::vector<uint32_t>& out) {
  checkWidth(width, "forward");
  out.assign(rows, rows + size_t(rows_) * width);
  for (const Hop& h : plan_) {
    gatherRows(out, h.order, width, staging_);
    allToAll(staging_, h.send, out, h.recv, width);
  }
}

void RowExchange::reverse(const uint32_t* rows, int width, std::vector<uint32_t>& out) {
  checkWidth(width, "reverse");
  out.assign(rows, rows + size_t(received_) * width);
  for (auto h = plan_.rbegin(); h != plan_.rend(); ++h) {
    // What arrived from each rank goes back to it; it lands in send order, which order[] undoes.
    allToAll(out, h->recv, staging_, h->send, width);
    out.resize(h->order.size() * size_t(width));
    for (size_t i = 0; i < h->order.size(); ++i)
      std::memcpy(&out[size_t(h->order[i]) * width], &staging_[i * width], size_t(width) * sizeof(uint32_t));
  }
}

}  // namespace moekit
