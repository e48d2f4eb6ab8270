// Compact ↔ padded rows of the tensor-core expert GEMMs (padded_rows.h).
//
// Math:
//   paddedRowMapKernel        paddedRow[r] = r − start[e] + paddedStart[e], e = the last expert
//                             with start[e] ≤ r (a binary search over start; experts with no rows
//                             have start[e] = start[e+1] and are skipped by it)
//   packRowsKernel<In, Out>   dst[map(r)·ldDst + c] = c < cols ? convert(src[r·cols + c]) : 0,
//                             convert = encodeBF16 (RNE, core/minifloat.h) into bf16 bits, else
//                             the value itself
//   unpackRowsKernel<kAct>    dst[r·cols + c] = src[map(r)·ldSrc + c]; the X1 form also writes a3
//                             and h = act(a1[, a3]) (core/activation.h) or h = hPad's value
//   addRowsKernel             dst[r·cols + c] += src[map(r)·ldSrc + c]
//   activationBackwardKernel<kAct>
//                             p = map(r), dh = rowWeight[r]·g[p·ld + c]; (da1, da3)[p·ld + c] =
//                             encodeBF16 of the activation's backward at a1/a3[r·F + c] for c < F,
//                             0 for F ≤ c < ld
// Thread mapping: every kernel is elementwise, one thread per output element (r, c), c fastest,
// 256 threads per block over a grid-stride loop (paddedRowMapKernel: one thread per row).
#include "padded_rows.h"

#include <type_traits>

#include "../core/activation.h"
#include "../core/minifloat.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 20;  // grids stride beyond this

unsigned blocksFor(int64_t count) { return gridBlocks(count, kThreads, kMaxBlocks); }

__global__ void paddedRowMapKernel(const int32_t* start, const int32_t* paddedStart, int experts, int n,
                                   int32_t* paddedRow) {
  for (int64_t i = globalThread(); i < n; i += gridThreads()) {
    const int r = int(i);
    int lo = 0, hi = experts - 1;  // the answer is in [lo, hi]: start[lo] ≤ r < start[hi + 1]
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (start[mid] <= r) lo = mid;
      else hi = mid - 1;
    }
    paddedRow[i] = r - start[lo] + paddedStart[lo];
  }
}

template <class In, class Out>
__device__ __forceinline__ Out packed(In v) {
  if constexpr (std::is_same_v<Out, uint16_t>) return encodeBF16(v);
  else return v;
}

template <class In, class Out>
__global__ void packRowsKernel(const In* src, int64_t rows, int cols, const int32_t* rowMap, Out* dst, int ldDst) {
  const int64_t count = rows * ldDst;
  for (int64_t i = globalThread(); i < count; i += gridThreads()) {
    const int64_t r = i / ldDst;
    const int c = int(i % ldDst);
    const int64_t to = (rowMap ? int64_t(rowMap[r]) : r) * ldDst + c;
    dst[to] = c < cols ? packed<In, Out>(src[r * cols + c]) : Out(0);
  }
}

// kAct < 0: a plain copy of one tensor (a1Pad → a1); otherwise X1's outputs for Activation(kAct).
template <int kAct>
__global__ void unpackRowsKernel(const float* a1Pad, const float* a3Pad, const float* hPad, int ldPad,
                                 const int32_t* rowMap, int64_t rows, int cols, float* a1, float* a3, float* h) {
  const int64_t count = rows * cols;
  for (int64_t i = globalThread(); i < count; i += gridThreads()) {
    const int64_t r = i / cols, c = i % cols;
    const int64_t from = (rowMap ? int64_t(rowMap[r]) : r) * ldPad + c;
    const float v1 = a1Pad[from];
    a1[i] = v1;
    if constexpr (kAct == int(Activation::Swiglu)) {
      const float v3 = a3Pad[from];
      a3[i] = v3;
      h[i] = hPad ? hPad[from] : activation::swiglu(v1, v3);
    } else if constexpr (kAct == int(Activation::Gelu)) {
      h[i] = activation::gelu(v1);
    } else if constexpr (kAct == int(Activation::Relu)) {
      h[i] = activation::relu(v1);
    }
  }
}

__global__ void addRowsKernel(const float* src, int ldSrc, const int32_t* rowMap, int64_t rows, int cols,
                              float* dst) {
  const int64_t count = rows * cols;
  for (int64_t i = globalThread(); i < count; i += gridThreads()) {
    const int64_t r = i / cols, c = i % cols;
    dst[i] += src[(rowMap ? int64_t(rowMap[r]) : r) * ldSrc + c];
  }
}

template <int kAct>
__global__ void activationBackwardKernel(const float* g, int ld, const int32_t* rowMap, int64_t rows, int F,
                                         const float* rowWeight, const float* a1, const float* a3,
                                         uint16_t* da1, uint16_t* da3) {
  const int64_t count = rows * ld;
  for (int64_t i = globalThread(); i < count; i += gridThreads()) {
    const int64_t r = i / ld;
    const int c = int(i % ld);
    const int64_t to = int64_t(rowMap[r]) * ld + c;
    float d1 = 0.0f, d3 = 0.0f;
    if (c < F) {
      const int64_t at = r * F + c;
      const float dh = rowWeight[r] * g[to];
      if constexpr (kAct == int(Activation::Swiglu)) activation::swigluBackward(a1[at], a3[at], dh, d1, d3);
      else if constexpr (kAct == int(Activation::Gelu)) d1 = dh * activation::geluGrad(a1[at]);
      else d1 = activation::reluBackward(a1[at], dh);
    }
    da1[to] = encodeBF16(d1);
    if constexpr (kAct == int(Activation::Swiglu)) da3[to] = encodeBF16(d3);
  }
}

template <class In, class Out>
void launchPack(const In* src, int64_t rows, int cols, const int32_t* rowMap, Out* dst, int ldDst,
                cudaStream_t stream, const char* name) {
  if (rows == 0 || ldDst == 0) return;
  checkLaunch(moekit::launch<packRowsKernel<In, Out>>(blocksFor(rows * ldDst), kThreads, 0, stream, src, rows, cols,
                                                      rowMap, dst, ldDst),
              name);
}

template <int kAct>
void launchUnpack(const float* a1Pad, const float* a3Pad, const float* hPad, int ldPad, const int32_t* rowMap,
                  int64_t rows, int cols, float* a1, float* a3, float* h, cudaStream_t stream, const char* name) {
  if (rows == 0 || cols == 0) return;
  checkLaunch(moekit::launch<unpackRowsKernel<kAct>>(blocksFor(rows * cols), kThreads, 0, stream, a1Pad, a3Pad, hPad,
                                                     ldPad, rowMap, rows, cols, a1, a3, h),
              name);
}

template <int kAct>
void launchActivationBackward(const float* g, int ld, const int32_t* rowMap, int64_t rows, int F,
                              const float* rowWeight, const float* a1, const float* a3, uint16_t* da1, uint16_t* da3,
                              cudaStream_t stream, const char* name) {
  if (rows == 0 || ld == 0) return;
  checkLaunch(moekit::launch<activationBackwardKernel<kAct>>(blocksFor(rows * ld), kThreads, 0, stream, g, ld, rowMap,
                                                             rows, F, rowWeight, a1, a3, da1, da3),
              name);
}

}  // namespace

void paddedRowMap(const int32_t* start, const int32_t* paddedStart, int experts, int n, int32_t* paddedRow,
                  cudaStream_t stream) {
  if (n == 0) return;
  checkLaunch(moekit::launch<paddedRowMapKernel>(blocksFor(n), kThreads, 0, stream, start, paddedStart, experts, n,
                                                 paddedRow),
              "paddedRowMapKernel");
}

void packRowsBf16(const float* src, int64_t rows, int cols, const int32_t* rowMap, uint16_t* dst, int ldDst,
                  cudaStream_t stream) {
  launchPack(src, rows, cols, rowMap, dst, ldDst, stream, "packRowsKernel<f32, bf16>");
}

void packRows(const uint8_t* src, int64_t rows, int cols, const int32_t* rowMap, uint8_t* dst, int ldDst,
              cudaStream_t stream) {
  launchPack(src, rows, cols, rowMap, dst, ldDst, stream, "packRowsKernel<u8, u8>");
}

void packRows(const float* src, int64_t rows, int cols, const int32_t* rowMap, float* dst, int ldDst,
              cudaStream_t stream) {
  launchPack(src, rows, cols, rowMap, dst, ldDst, stream, "packRowsKernel<f32, f32>");
}

void unpackRows(const float* src, int ldSrc, const int32_t* rowMap, int64_t rows, int cols, float* dst,
                cudaStream_t stream) {
  launchUnpack<-1>(src, nullptr, nullptr, ldSrc, rowMap, rows, cols, dst, nullptr, nullptr, stream,
                   "unpackRowsKernel<copy>");
}

void addUnpackedRows(const float* src, int ldSrc, const int32_t* rowMap, int64_t rows, int cols, float* dst,
                     cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  checkLaunch(moekit::launch<addRowsKernel>(blocksFor(rows * cols), kThreads, 0, stream, src, ldSrc, rowMap, rows,
                                            cols, dst),
              "addRowsKernel");
}

void unpackUpProjection(Activation act, const float* a1Pad, const float* a3Pad, const float* hPad, int ldPad,
                        const int32_t* rowMap, int64_t rows, int F, float* a1, float* a3, float* h,
                        cudaStream_t stream) {
  switch (act) {
    case Activation::Swiglu:
      launchUnpack<int(Activation::Swiglu)>(a1Pad, a3Pad, hPad, ldPad, rowMap, rows, F, a1, a3, h, stream,
                                            "unpackRowsKernel<swiglu>");
      break;
    case Activation::Gelu:
      launchUnpack<int(Activation::Gelu)>(a1Pad, nullptr, nullptr, ldPad, rowMap, rows, F, a1, nullptr, h, stream,
                                          "unpackRowsKernel<gelu>");
      break;
    case Activation::Relu:
      launchUnpack<int(Activation::Relu)>(a1Pad, nullptr, nullptr, ldPad, rowMap, rows, F, a1, nullptr, h, stream,
                                          "unpackRowsKernel<relu>");
      break;
  }
}

void packActivationBackward(Activation act, const float* gPad, int ldPad, const int32_t* rowMap, int64_t rows,
                            int F, const float* rowWeight, const float* a1, const float* a3, uint16_t* da1,
                            uint16_t* da3, cudaStream_t stream) {
  switch (act) {
    case Activation::Swiglu:
      launchActivationBackward<int(Activation::Swiglu)>(gPad, ldPad, rowMap, rows, F, rowWeight, a1, a3, da1, da3,
                                                        stream, "activationBackwardKernel<swiglu>");
      break;
    case Activation::Gelu:
      launchActivationBackward<int(Activation::Gelu)>(gPad, ldPad, rowMap, rows, F, rowWeight, a1, nullptr, da1,
                                                      nullptr, stream, "activationBackwardKernel<gelu>");
      break;
    case Activation::Relu:
      launchActivationBackward<int(Activation::Relu)>(gPad, ldPad, rowMap, rows, F, rowWeight, a1, nullptr, da1,
                                                      nullptr, stream, "activationBackwardKernel<relu>");
      break;
  }
}

}  // namespace moekit::cuda
