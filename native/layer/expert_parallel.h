// ExpertParallel: the ExpertStage of an expert-parallel layer (DESIGN §2 `parallel.expert`). With
// P ranks in the expert group, rank r owns a contiguous block of Eg/P experts of every group g
// (experts [r·Eg/P, (r+1)·Eg/P) of the group) and runs them with the backend's own stage (`local`,
// built over those blocks only); this wrapper moves the assignments to the owners and back
// (RowExchange: flat, or hierarchical with ranksPerNode).
//
//   forward   each assignment a sends (owner's local expert, weight[a], x[token[a]]) to the owner
//             of expert[a]; the owner runs its local stage on the rows it received — one row per
//             assignment, at the assignment's weight — and returns each output row w·E_e(x);
//             the origin adds them into y[token[a]].
//   backward  dy[token[a]] goes to the owner, whose local stage adds the expert gradients and
//             gives the input gradient row and ∂/∂weight; both come back, dx rows are added into
//             dx[token[a]] and dWeight[a] is set.
//
// The weight travels with the row (one word each way beside H), so the owner's stage applies it
// and computes dWeight exactly as a single-process layer does — the same fused kernels and
// expressions — and the origin needs no expert output of its own for the backward. Rows reach an
// owner ordered by origin rank, then assignment: the order of the global batch when the ranks
// hold consecutive slices of it, whatever the exchange mode.
//
// The collective contract: every rank of the group calls forward and backward together, in the
// same order (a rank with no tokens too).
#pragma once

#include <memory>
#include <vector>

#include "../comm/communicator.h"
#include "row_exchange.h"
#include "stages.h"

namespace moekit {

class ExpertParallel final : public ExpertStage {
 public:
  // groupSizes / groupFfn: every group's expert count over all ranks and its ffnHidden. Throws
  // Error(Config) when a count is not a multiple of comm.size() or ranksPerNode does not divide it.
  ExpertParallel(comm::Communicator& comm, int ranksPerNode, int hidden, Activation activation,
                 std::vector<int> groupSizes, std::vector<int> groupFfn, std::unique_ptr<ExpertStage> local);

  // The ExpertStage contract over global expert indices; token and expert are validated here
  // (Error(Argument) naming the assignment).
  void forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
               const float* weight, float* y) override;
  void backward(const float* dy, float* dx, float* dWeight) override;
  // Forward FLOPs of global expert e on this rank's assignments (its share of the batch's).
  int64_t flops(int expert) const override;

  // checkFinite's diagnosis without rerunning an expert (which would be a collective on one
  // rank): the expert of the first assignment of `token` in the last forward whose returned row
  // weight·E_e(x_t) holds a NaN or an Inf, or −1.
  int firstNonFiniteExpert(int token) const;

  const RowExchange& exchange() const { return exchange_; }

 private:
  int owner(int expert) const;
  int localIndex(int expert) const;

  comm::Communicator& comm_;
  RowExchange exchange_;
  int H_ = 0, E_ = 0;
  Activation act_;
  std::vector<int> groupSizes_, groupFfn_, groupStart_, groupOf_, localStart_;
  std::unique_ptr<ExpertStage> local_;

  // The last forward.
  bool haveForward_ = false;
  std::vector<int32_t> token_, expert_, rows_;  // [n], [n], [E] assignments per expert
  std::vector<float> returned_;                 // [n,H] weight·E_e(x_t) of each assignment
  // Scratch kept across calls.
  std::vector<int32_t> dest_, localToken_, localExpert_;
  std::vector<float> localX_, localWeight_, localOut_, localDx_, localDWeight_;
  std::vector<uint32_t> send_, recv_;
};

}  // namespace moekit
