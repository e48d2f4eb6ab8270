// Device side of dispatch and combine (the local stages of native/cpu/dispatch.h, on a device):
// a stable sort of assignments by (expert, token, assignment), the row maps, permute, the weighted
// combine and their backwards. Kernels and their thread mappings: permute.cu.
//
// Every pointer is DEVICE memory; everything is enqueued on `stream`. Every function throws
// moekit::Error(Device) naming the kernel when a launch fails (an emulated kernel fault propagates
// as moekit::emu::KernelFault). Sizes are the caller's to validate (cuda::Experts does).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.h"
#include "device_buffer.h"

namespace moekit::cuda {

// Scratch of stableSortByKey, kept by the caller as long as it likes.
struct SortScratch {
  DeviceBuffer<int32_t> other;       // [n] the second ping-pong order
  DeviceBuffer<int32_t> rank;        // [n] rank of each item among its chunk's items of one digit
  DeviceBuffer<int32_t> chunkCount;  // [256·chunks] digit-major counts, then their exclusive scan
  void release() {
    for (DeviceBuffer<int32_t>* b : {&other, &rank, &chunkCount}) b->release();
  }
};

// order[i] = i for i in [0, n).
void fillIota(int32_t* order, int n, cudaStream_t stream);

// Stable LSD radix sort of the ids in order [n] by key[id] ∈ [0, keyRange): on return order is
// sorted by key, ids of equal key in their order on entry. 8-bit digits, ⌈log2(keyRange)/8⌉
// passes (none when keyRange ≤ 1), each a histogram per 256-item chunk, one exclusive scan and a
// scatter — no atomics, so the result is the same on every run.
void stableSortByKey(int32_t* order, const int32_t* key, int keyRange, int n, SortScratch& scratch,
                     cudaStream_t stream);

// For order [n] sorted by key[order[i]] ∈ [0, numKeys): start [numKeys+1], start[k] = first i
// whose key is ≥ k (so segment k is [start[k], start[k+1]) and start[numKeys] = n).
void segmentStarts(const int32_t* order, const int32_t* key, int n, int numKeys, int32_t* start,
                   cudaStream_t stream);

// rowToken[r] = token[rowAssignment[r]], rowWeight[r] = weight[rowAssignment[r]], r in [0, n).
void gatherAssignments(const int32_t* rowAssignment, const int32_t* token, const float* weight,
                       int n, int32_t* rowToken, float* rowWeight, cudaStream_t stream);

// permute: xp [n,H] = x[rowToken[r]] (overwritten). x [T,H].
void permuteRows(const float* x, int H, const int32_t* rowToken, int n, float* xp,
                 cudaStream_t stream);

// out [T,H] += Σ_{i in [tokenStart[t], tokenStart[t+1])} w_r · rows[r], r = tokenRows[i], in i
// order; w_r = rowWeight[r], or 1 when rowWeight is null. With tokenRows the rows of each token in
// ascending row order this is unpermute (rows = yp, weights) and permute's backward (rows = dxp).
void addRowsToTokens(const float* rows, const float* rowWeight, const int32_t* tokenStart,
                     const int32_t* tokenRows, int T, int H, float* out, cudaStream_t stream);

// unpermute's backward: dyp [n,H] = rowWeight[r] · dy[rowToken[r]] (overwritten) and, when
// dWeight is not null, dWeight[rowAssignment[r]] = dy[rowToken[r]] · yp[r] (fp32).
void unpermuteBackward(const float* dy, int H, const int32_t* rowToken, const float* rowWeight,
                       const float* yp, const int32_t* rowAssignment, int n, float* dyp,
                       float* dWeight, cudaStream_t stream);

}  // namespace moekit::cuda
