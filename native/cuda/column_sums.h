// Column sums of a row-major float64 matrix over consecutive row segments, on the device, in a
// fixed order (no atomics): the same inputs give the same bits on every run.
//
//   out [segments, cols]:  out[s, c] = Σ_{t ∈ segment s} v[t, c]
//
// Order of each sum (column_sums.cu): the segment is cut into chunks of 256 rows from its first
// row; in a chunk, lane l ∈ [0, 8) adds rows l, l + 8, l + 16, … in ascending order, the 8 lane
// sums combine as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)); the chunk sums are then added
// in ascending chunk order. A total of n values is the case cols = 1, one segment.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moekit::cuda {

// v [rows, cols]; segStart DEVICE [segments + 1] ascending row offsets within [0, rows], or null
// for the single segment [0, rows) (segments must then be 1); maxRows ≥ the longest segment (the
// caller knows the lengths). out [segments, cols] is overwritten. Pointers are DEVICE memory;
// work and scratch are ordered on `stream`. Throws Error(Shape) when the grid would exceed CUDA's
// limits (more than 65535 segments or 65535 chunks of 256 rows), Error(Device) on a CUDA failure.
void segmentColumnSums(const double* v, int64_t rows, int cols, const int64_t* segStart,
                       int segments, int64_t maxRows, double* out, cudaStream_t stream);

// *out (DEVICE) = scale · Σ / divisor of v [n] (DEVICE), the sum in the order above (cols = 1, one
// segment), then (scale · Σ) / divisor as the host would round it (0 when n = 0), ordered on
// `stream`: nothing waits.
void scaledSum(const double* v, int64_t n, double scale, double divisor, double* out, cudaStream_t stream);

}  // namespace moekit::cuda
