// RowExchange: moves rows of 4-byte words (floats or integers, bit for bit) from the ranks that
// own them (origins) to the ranks that process them (destinations) and back, over a
// communicator's all-to-all (DESIGN §2 expert parallelism). Two modes:
//
//   flat          one hop: every row goes straight from its origin to its destination.
//   hierarchical  nodes of L = ranksPerNode consecutive ranks (rank r is local index r mod L of
//                 node r / L). Two hops: first inside the origin's node, to the rank whose local
//                 index is the destination's; then across nodes, between ranks of the same local
//                 index (a rail), to the destination. Across nodes a rank then talks only to the
//                 N − 1 ranks of its rail (N nodes), where flat talks to all N·L − L ranks of the
//                 other nodes.
//
// Each hop first sends its row counts to the hop's peers (flat: every rank; hierarchical: the
// node's ranks, then the rail's), then the rows, grouped by target rank in rank order and in their
// own order within a group; what a rank receives is grouped by source rank in rank order.
// dispatch() plans the routes (rows carry their destination through the hops) and delivers the
// rows ordered by origin rank, then origin row, in both modes: flat, directly; hierarchical,
// because the second hop's sources (one per node, nodes in rank order) each pass on their node's
// rows in the order they received them (by origin rank, then row). So what a destination computes
// does not depend on the mode. forward() and reverse() move other rows along the same plan
// without counts or headers.
//
// Every rank of the communicator calls each method together (they are collectives); a rank with
// no rows still takes part.
#pragma once

#include <cstdint>
#include <vector>

#include "../comm/communicator.h"

namespace moekit {

class RowExchange {
 public:
  // ranksPerNode: 0 (or 1, or the communicator's size) = flat; otherwise a divisor of the size.
  // Throws Error(Config) naming parallel.ranksPerNode when it does not divide the size.
  RowExchange(comm::Communicator& comm, int ranksPerNode);

  // Plans the routes of n rows — row i to rank dest[i] — and moves rows [n, width] along them.
  // out = the rows this rank receives, [received(), width], by origin rank, then origin row.
  void dispatch(const int32_t* dest, int n, const uint32_t* rows, int width, std::vector<uint32_t>& out);
  // Along the last dispatch's routes: rows [n, width] (n of that dispatch) → out [received(), width].
  void forward(const uint32_t* rows, int width, std::vector<uint32_t>& out);
  // Back along them: rows [received(), width] → out [n, width], row i where the origin's row i was.
  void reverse(const uint32_t* rows, int width, std::vector<uint32_t>& out);

  int received() const { return received_; }
  bool hierarchical() const { return hops() == 2; }
  // What this rank sent since construction, per destination rank (its own entry stays 0): messages
  // (a hop's count to each peer, and each non-empty block of rows) and their bytes.
  const std::vector<int64_t>& messages() const { return messages_; }
  const std::vector<int64_t>& bytes() const { return bytes_; }

 private:
  struct Hop {
    std::vector<int32_t> order;  // send position i holds the hop's input row order[i]
    comm::Counts send, recv;     // rows to / from each rank
  };

  int hops() const { return nodeRanks_ > 1 && nodeRanks_ < comm_.size() ? 2 : 1; }
  bool isPeer(int hop, int rank) const;  // rank takes part in this rank's exchanges of `hop`
  int target(int hop, int dest) const;   // where a row bound for `dest` goes in `hop`
  comm::Counts exchangeCounts(int hop, const comm::Counts& send);
  void allToAll(const std::vector<uint32_t>& send, const comm::Counts& sendRows, std::vector<uint32_t>& recv,
                const comm::Counts& recvRows, int width);
  void checkWidth(int width, const char* op) const;

  comm::Communicator& comm_;
  int nodeRanks_ = 0;
  std::vector<Hop> plan_;
  int rows_ = 0, received_ = 0;  // n of the last dispatch, and what it delivered
  std::vector<int64_t> messages_, bytes_;
  std::vector<uint32_t> buffer_, staging_;
};

}  // namespace moekit
