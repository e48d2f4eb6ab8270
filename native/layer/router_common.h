// What every RouterStage implementation shares, on the host: the spec's validation and the
// derived layout (expert groups), the checks of a forward's inputs, the R2 mask, and the L2/B1
// count window. The CPU and CUDA routers call these, so they reject the same misuse with the same
// messages and keep the same window.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "stage_types.h"
#include "stages.h"

namespace moekit {

struct RouterLayout {
  int E = 0, H = 0, G = 0;             // experts, hidden, expert groups
  std::vector<int> groupStart;         // [G+1]
  std::vector<int> groupOf;            // [E]
  bool anyModality = false;            // some group carries a modality (R2)
};

// Validates the spec (Error(Config) naming the setting) and fills an empty groupModality with −1.
RouterLayout checkRouterSpec(RouterSpec& spec);

// DESIGN §4: a token of x [T,H] holding a NaN or an Inf throws Error(Argument) naming the token,
// for every router type (top-k would find no finite key, affinity would route it to experts 0
// and 1, expert choice would let it push finite tokens out).
void checkFiniteTokens(const float* x, int T, int H);
// The same on the backend's memory: memory.firstNonFiniteRow finds the token, whose row alone is
// then copied to the host for the message.
void checkFiniteTokens(const DeviceMemory& memory, const float* x, int T, int H);

// A forward's inputs (Error(Shape/Argument) naming the argument), before any state changes. Reads
// no value of x: its finiteness is checkFiniteTokens'.
void checkRouterInputs(const RouterSpec& spec, const RouterLayout& layout, const float* x, int T,
                       const int32_t* modality, const std::vector<int>& seqLens,
                       const RouterParams& p);

// R2: [T,E] with 1 where token t may route to expert e; empty when no group has a modality or
// modality is null (every expert allowed).
std::vector<uint8_t> allowedMask(const RouterSpec& spec, const RouterLayout& layout,
                                 const int32_t* modality, int T);

// The L2 window and the B1 counts: selections and token totals since the last endStep(), summed
// over the data-parallel group by the optional reducer.
class CountWindow {
 public:
  explicit CountWindow(const RouterLayout& layout);

  // Adds one forward: counts [E] (R6 selections), T tokens, and per expert group the tokens it
  // accepts (allowed empty = all). The reducer, when set, sums [E counts, T, G group tokens, 1]
  // over the data-parallel group first (every forward: the last entry counts the ranks). Returns
  // the window as it was before, for restore().
  struct Saved {
    std::vector<int64_t> counts, groupTokens;
    int64_t tokens = 0;
  };
  Saved add(const std::vector<int32_t>& counts, int T, const std::vector<uint8_t>& allowed,
            const std::function<void(int64_t*, size_t)>& reducer);
  void restore(Saved saved);
  void reset();

  const std::vector<int64_t>& counts() const { return counts_; }            // [E]
  const std::vector<int64_t>& groupTokens() const { return groupTokens_; }  // [G]
  int64_t tokens() const { return tokens_; }
  // This rank's share of the last add's tokens over the group: T / (Σ_ranks T), or 1/ranks when
  // no rank had a token; 1 without a reducer. The router scales its loss values and gradients by
  // it, so the ranks' objectives sum to the objective of the whole batch (DESIGN L2).
  double tokenShare() const { return share_; }

 private:
  RouterLayout layout_;
  std::vector<int64_t> counts_, groupTokens_;
  int64_t tokens_ = 0;
  double share_ = 1.0;
};

}  // namespace moekit
