// segmentColumnSums (column_sums.h): deterministic column sums in two passes.
//
//   columnChunkKernel   grid (⌈cols/32⌉ column tiles, chunks of the longest segment, segments),
//                       256 threads = 32 columns × 8 lanes. Thread (lane l, column c) adds rows
//                       l, l + 8, … of its 256-row chunk of the segment (reads of a warp: 32
//                       consecutive columns of one row), then the 8 lane sums of a column combine
//                       in shared memory as a 3-step tree (strides 4, 2, 1) and lane 0 writes the
//                       chunk's partial sum. Chunks past the segment's end write 0.
//   chunkTotalKernel    one thread per (segment, column): the partial sums of the segment's chunks
//                       added in ascending chunk order.
// scaledSum is the one-column case, then scaleKernel (one thread: *out = scale · *out / divisor).
#include "column_sums.h"

#include <string>

#include "../core/errors.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "stream_buffer.h"

namespace moekit::cuda {

namespace {

constexpr int kColumns = 32;     // columns of a block
constexpr int kLanes = 8;        // row lanes of a block
constexpr int kChunkRows = 256;  // rows of a chunk
constexpr int kTotalThreads = 128;
constexpr int64_t kMaxGridYZ = 65535;

__global__ void __launch_bounds__(kColumns * kLanes)
    columnChunkKernel(const double* v, int64_t rows, int cols, const int64_t* segStart,
                      double* partial) {
  __shared__ double lanes[kLanes][kColumns];
  const int column = int(threadIdx.x) % kColumns, lane = int(threadIdx.x) / kColumns;
  const int c = int(blockIdx.x) * kColumns + column;
  const int64_t chunk = blockIdx.y, chunks = gridDim.y, segment = blockIdx.z;
  const int64_t segBegin = segStart ? segStart[segment] : 0;
  const int64_t segEnd = segStart ? segStart[segment + 1] : rows;
  const int64_t begin = segBegin + chunk * kChunkRows;
  const int64_t end = begin + kChunkRows < segEnd ? begin + kChunkRows : segEnd;
  double acc = 0;
  if (c < cols)
    for (int64_t t = begin + lane; t < end; t += kLanes) acc += v[t * cols + c];
  lanes[lane][column] = acc;
  __syncthreads();
  for (int stride = kLanes / 2; stride > 0; stride /= 2) {
    if (lane < stride) lanes[lane][column] += lanes[lane + stride][column];
    __syncthreads();
  }
  if (lane == 0 && c < cols) partial[(segment * chunks + chunk) * cols + c] = lanes[0][column];
}

__global__ void chunkTotalKernel(const double* partial, int cols, int segments, int64_t chunks,
                                 double* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(segments) * cols) return;
  const int64_t segment = i / cols, c = i % cols;
  double sum = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[(segment * chunks + chunk) * cols + c];
  out[i] = sum;
}

__global__ void scaleKernel(double scale, double divisor, double* value) { *value = scale * *value / divisor; }

}  // namespace

void segmentColumnSums(const double* v, int64_t rows, int cols, const int64_t* segStart,
                       int segments, int64_t maxRows, double* out, cudaStream_t stream) {
  if (rows < 0 || cols < 0 || segments < 1 || maxRows < 0 || (!segStart && segments != 1))
    throw Error(ErrorKind::Argument,
                "segmentColumnSums: expected rows, cols, maxRows >= 0 and segments >= 1 (1 without "
                "segStart), got rows " + std::to_string(rows) + ", cols " + std::to_string(cols) +
                    ", segments " + std::to_string(segments) + ", maxRows " + std::to_string(maxRows));
  if (cols == 0) return;
  const int64_t chunks = maxRows > 0 ? (maxRows + kChunkRows - 1) / kChunkRows : 1;
  if (chunks > kMaxGridYZ || segments > kMaxGridYZ)
    throw Error(ErrorKind::Shape, "segmentColumnSums: " + std::to_string(segments) + " segments of up to " +
                                      std::to_string(maxRows) + " rows exceed CUDA's grid limit (65535 "
                                      "segments, 65535 chunks of 256 rows)");
  StreamBuffer<double> partial(size_t(segments) * size_t(chunks) * size_t(cols), stream,
                               "column partial sums");
  const dim3 grid(unsigned((cols + kColumns - 1) / kColumns), unsigned(chunks), unsigned(segments));
  checkCuda(launch<columnChunkKernel>(grid, dim3(kColumns * kLanes), 0, stream, v, rows, cols,
                                      segStart, partial.get()),
            "launch of columnChunkKernel");
  const int64_t outputs = int64_t(segments) * cols;
  checkCuda(launch<chunkTotalKernel>(dim3(unsigned((outputs + kTotalThreads - 1) / kTotalThreads)),
                                     dim3(kTotalThreads), 0, stream, partial.get(), cols, segments,
                                     chunks, out),
            "launch of chunkTotalKernel");
}

void scaledSum(const double* v, int64_t n, double scale, double divisor, double* out, cudaStream_t stream) {
  if (n == 0) {
    checkCuda(cudaMemsetAsync(out, 0, sizeof(double), stream), "cudaMemsetAsync of an empty sum");
    return;
  }
  segmentColumnSums(v, n, 1, nullptr, 1, n, out, stream);
  if (scale != 1.0 || divisor != 1.0)
    checkCuda(launch<scaleKernel>(dim3(1), dim3(1), 0, stream, scale, divisor, out), "launch of scaleKernel");
}

}  // namespace moekit::cuda
