// The communicators of a parallel layer (DESIGN §2 `parallel`) and what the layer does with them
// besides moving tokens (expert_parallel.h):
//
//   expert  the expert group: its P ranks hold different tokens and share the routed experts, a
//           contiguous block of Eg/P per group each.
//   data    the data-parallel group: its ranks hold different tokens and the same parameters
//           (with `expert`, the same expert block: the two groups are orthogonal).
//
// The ranks holding different tokens — the product of both groups — form the token group: the
// balance window's counts are summed over it at every forward (L2, B1), and each rank's losses
// are its token share of the whole batch's (CountWindow::tokenShare), so that the ranks'
// objectives Σ y·dy + aux add up to the whole batch's.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "../comm/communicator.h"
#include "stages.h"

namespace moekit {

struct ParallelGroups {
  comm::Communicator* expert = nullptr;
  comm::Communicator* data = nullptr;
  int ranksPerNode = 0;  // hierarchical token exchange over the expert group; 0 = flat
};

// Sums a count vector in place over the token group (expert, then data); null without groups.
std::function<void(int64_t*, size_t)> countReducer(const ParallelGroups& groups);

// A gradient buffer of `count` f32 elements.
struct GradBuffer {
  float* data;
  int64_t count;
};

// Sums every buffer (memory of the backend's device) over `comm`, as one bucket: the buffers are
// packed into one host f32 buffer and reduced by one allReduce (one per 2³¹ − 1 elements), then
// unpacked.
void allReduceBucket(const DeviceMemory& memory, comm::Communicator& comm, const std::vector<GradBuffer>& buffers);

}  // namespace moekit
