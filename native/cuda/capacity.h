// Capacity (DESIGN C1–C5) on a CUDA device: which R6 slots each expert keeps, and where C5 moves
// the slots of full experts. Kernels and their thread mappings: capacity.cu. The CPU oracle is
// cpu::Router::applyCapacity; the decisions are equal (integer results, float64 comparisons only).
//
// Every pointer is DEVICE memory; the work is enqueued on `stream` (nothing synchronises). Throws
// Error(Shape/Argument) naming the argument before enqueuing anything, Error(Device) naming the
// kernel when a launch fails.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "../layer/stage_types.h"
#include "cuda_check.h"
#include "device_buffer.h"

namespace moekit::cuda {

struct CapacityArgs {
  int T = 0, E = 0, k = 0;
  int64_t capacity = 0;  // C1's C = ceil(factor·T·k/E) (capacity::perExpert); 0 = no limit (C4 only)
  RouterSpec::Policy policy = RouterSpec::Policy::Position;
  double minAffinity = -INFINITY;  // C4, used only when cos is not null
};

// Scratch of applyCapacity, grown on demand and kept by the caller as long as it likes.
struct CapacityScratch {
  DeviceBuffer<int32_t> kept;        // [E] C2/C3: slots of each expert that survived C4
  DeviceBuffer<int32_t> start;       // [E] C2/C3: where each expert's slots begin in `candidates`
  DeviceBuffer<int32_t> cursor;      // [E] C2/C3: next free place of each expert in `candidates`
  DeviceBuffer<int32_t> candidates;  // [T·k] C2/C3: kept slots grouped by expert
  DeviceBuffer<int32_t> used;        // [E] C5: slots each expert holds so far
  void release() {
    for (DeviceBuffer<int32_t>* b : {&kept, &start, &cursor, &candidates, &used}) b->release();
  }
};

// selIdx [T,k] R6 selection; idx [T,k] must hold a copy of selIdx on entry and holds the final
// experts on exit (C5 moves slots); keep [T,k] = 1 kept / 0 dropped. s [T,E] R3 scores (C3
// ranking; read only by policy Score), q [T,E] selection keys after R5 (C5's order,
// routing::nextInKeyOrder; read only by policy Reroute), cos [T,E] R8 cosines (C4; null = no
// minimum affinity). C4 drops slots whose cosine is below minAffinity first; they take no capacity.
// With capacity > 0: C2 Position keeps each expert's first C slots in slot order, C3 Score its C
// highest s (ties → earlier slot), C5 Reroute walks tokens in order and moves a choice whose expert
// is full to the token's next expert in q order that is neither chosen nor full nor below
// minAffinity, else drops it. An entry of idx outside [0, E) is dropped (R6 produces none).
void applyCapacity(const CapacityArgs& a, const int32_t* selIdx, const double* s, const double* q,
                   const double* cos, int32_t* idx, int32_t* keep, CapacityScratch& scratch,
                   cudaStream_t stream);

}  // namespace moekit::cuda
