// Grouped fp32 GEMMs over expert-contiguous rows (grouped_gemm.h), with the expert activations
// fused into their epilogues. CPU reference: native/cpu/grouped_gemm.cc and experts.cc.
//
// Math, per expert e of the group (rows_e of its permuted rows, w_e [N,K]):
//   rowGroupedGemmKernel<BKContiguous = true>   NT  C [rows_e,N] = A [rows_e,K] · w_eᵀ
//   rowGroupedGemmKernel<BKContiguous = false>  NN  C [rows_e,K] = A [rows_e,N] · w_e
//     then the epilogue: store C, add C (dA += …), or X1's activation — forward a1 = C
//     (a3 = C3 from a second B operand, w3, sharing the A tile), h = act(a1[, a3]); backward
//     C = dh and da1 (da3) = act'(…)·dh at the saved a1 (a3) (core/activation.h).
//   weightGradKernel                            TN  dW_e [N,K] += dOut_eᵀ [N,rows_e] · A [rows_e,K]
//
// Thread mapping (all three): a block of 256 threads computes a 64×64 tile of C; thread t owns the
// 4×4 micro-tile rows 4·(t/16)+i, columns 4·(t%16)+j in registers. The inner dimension is walked
// in steps of 16: each step stages a 64×16 slice of both operands in shared memory, transposed to
// [k][i] (rows padded to 68 floats: 16-byte aligned for the float4 reads, fewer bank conflicts),
// zero-filled outside the matrix, then every thread does 16 rank-1 updates of its micro-tile from
// one float4 of each slice per k. Staging reads are coalesced along whichever index of the operand
// is contiguous in memory (k for A and NT's B; the output index for NN's B and both TN operands).
// Each C element is one thread's fmaf chain over k = 0, 1, …: deterministic, no atomics.
//   NT/NN grid: x = row tile over the group's experts (an expert's rows are cut into ⌈rows_e/64⌉
//   tiles, found by walking the expert offsets), y = 64-column tile.
//   TN grid: x = 64-column tile of K, y = 64-row tile of N, z = expert (its rows are the inner loop).
#include "grouped_gemm.h"

#include <string>

#include "../core/activation.h"
#include "../core/errors.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"

namespace moekit::cuda {

namespace {

constexpr int kTile = 64;   // C tile, both dimensions
constexpr int kTileK = 16;  // inner step
constexpr int kMicro = 4;   // micro-tile per thread, both dimensions
constexpr int kGemmThreads = (kTile / kMicro) * (kTile / kMicro);  // 256
constexpr int kSmemStride = kTile + 4;                             // floats per staged k-row
constexpr int kStageFloats = kTileK * kSmemStride;                 // one staged operand slice
constexpr int kMaxColumnTiles = 65535;                             // gridDim.y

enum class Epilogue {
  Store,           // out = C
  Accumulate,      // out += C
  GeluForward,     // out = a1 = C, h = gelu(a1)
  ReluForward,     // out = a1 = C, h = relu(a1)
  SwigluForward,   // out = a1 = C, out3 = a3 = C3, h = swiglu(a1, a3)
  GeluBackward,    // out = da1 = C·gelu'(a1)
  ReluBackward,    // out = da1 = [a1 > 0]·C
  SwigluBackward,  // (out, out3) = (da1, da3) from dh = C at (a1, a3)
};

struct EpilogueArgs {
  float* out = nullptr;  // [rows, cols]
  float* out3 = nullptr;
  float* h = nullptr;
  const float* a1 = nullptr;
  const float* a3 = nullptr;
};

// Stages the slice i ∈ [0,64), k ∈ [k0, k0+16) of an operand into s[k − k0][i], 0 where
// i ≥ iEnd or k ≥ kEnd. kContiguous: element (i, k) at p[i·ld + k] (16 lanes read 16 consecutive
// k of one row); otherwise at p[k·ld + i] (a warp reads 32 consecutive i of one k).
template <bool kContiguous>
__device__ __forceinline__ void stageSlice(float* s, const float* p, int64_t ld, int iEnd, int k0,
                                           int kEnd) {
  const int tid = int(threadIdx.x);
  if constexpr (kContiguous) {
    const int kk = tid % kTileK;
    const bool kIn = k0 + kk < kEnd;
    MOEKIT_UNROLL
    for (int q = 0; q < kTile / (kGemmThreads / kTileK); ++q) {
      const int i = tid / kTileK + q * (kGemmThreads / kTileK);
      s[kk * kSmemStride + i] = kIn && i < iEnd ? p[int64_t(i) * ld + k0 + kk] : 0.0f;
    }
  } else {
    const int i = tid % kTile;
    const bool iIn = i < iEnd;
    MOEKIT_UNROLL
    for (int q = 0; q < kTileK / (kGemmThreads / kTile); ++q) {
      const int kk = tid / kTile + q * (kGemmThreads / kTile);
      s[kk * kSmemStride + i] = iIn && k0 + kk < kEnd ? p[int64_t(k0 + kk) * ld + i] : 0.0f;
    }
  }
}

__device__ __forceinline__ void unpack(const float* s, float (&v)[kMicro]) {
  const float4 q = *reinterpret_cast<const float4*>(s);
  v[0] = q.x;
  v[1] = q.y;
  v[2] = q.z;
  v[3] = q.w;
}

// acc[i][j] += Σ_k A(4·(t/16)+i, k) · B(4·(t%16)+j, k) over k ∈ [0, inner) for this thread's
// micro-tile (and acc3 with B3 when kDual). A(i, k) and B(j, k) as in stageSlice, from tile-origin
// pointers; iEnd/jEnd bound the tile's valid rows/columns. Shared memory: (2 or 3) slices.
template <bool kAContiguous, bool kBContiguous, bool kDual>
__device__ __forceinline__ void multiplyTile(const float* a, int64_t lda, int iEnd, const float* b,
                                             const float* b3, int64_t ldb, int jEnd, int inner,
                                             float (&acc)[kMicro][kMicro],
                                             float (&acc3)[kMicro][kMicro]) {
  float* sa = moekit::dynamicShared<float>();
  float* sb = sa + kStageFloats;
  float* sb3 = sb + kStageFloats;
  const int ty = int(threadIdx.x) / (kTile / kMicro), tx = int(threadIdx.x) % (kTile / kMicro);
  for (int k0 = 0; k0 < inner; k0 += kTileK) {
    stageSlice<kAContiguous>(sa, a, lda, iEnd, k0, inner);
    stageSlice<kBContiguous>(sb, b, ldb, jEnd, k0, inner);
    if constexpr (kDual) stageSlice<kBContiguous>(sb3, b3, ldb, jEnd, k0, inner);
    __syncthreads();
    MOEKIT_UNROLL
    for (int kk = 0; kk < kTileK; ++kk) {
      float av[kMicro], bv[kMicro];
      unpack(sa + kk * kSmemStride + ty * kMicro, av);
      unpack(sb + kk * kSmemStride + tx * kMicro, bv);
      MOEKIT_UNROLL
      for (int i = 0; i < kMicro; ++i)
        MOEKIT_UNROLL
        for (int j = 0; j < kMicro; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      if constexpr (kDual) {
        unpack(sb3 + kk * kSmemStride + tx * kMicro, bv);
        MOEKIT_UNROLL
        for (int i = 0; i < kMicro; ++i)
          MOEKIT_UNROLL
          for (int j = 0; j < kMicro; ++j) acc3[i][j] = fmaf(av[i], bv[j], acc3[i][j]);
      }
    }
    __syncthreads();
  }
}

// Row tile `tile` of the group: its expert, first row and the expert's row end (group-local).
// False past the last tile. Every thread of a block gets the same answer.
__device__ __forceinline__ bool findRowTile(const int32_t* start, int experts, int64_t tile,
                                            int& expert, int& rowBegin, int& rowEnd) {
  const int32_t base = start[0];
  for (int e = 0; e < experts; ++e) {
    const int64_t tiles = (start[e + 1] - start[e] + kTile - 1) / kTile;
    if (tile < tiles) {
      expert = e;
      rowBegin = start[e] - base + int(tile) * kTile;
      rowEnd = start[e + 1] - base;
      return true;
    }
    tile -= tiles;
  }
  return false;
}

template <bool kBContiguous, Epilogue kEpilogue>
__global__ void __launch_bounds__(kGemmThreads)
    rowGroupedGemmKernel(const float* a, const float* w, const float* w3, const int32_t* start,
                         int experts, int cols, int inner, EpilogueArgs ep) {
  constexpr bool kDual = kEpilogue == Epilogue::SwigluForward;
  int expert = 0, rowBegin = 0, rowEnd = 0;
  if (!findRowTile(start, experts, blockIdx.x, expert, rowBegin, rowEnd)) return;
  const int col0 = int(blockIdx.y) * kTile;
  // B(j, k) of expert e: NT w_e[j·K + k] (ld = inner), NN w_e[k·K + j] (ld = cols); w_e = N·K floats.
  const int64_t ldb = kBContiguous ? inner : cols;
  const int64_t bOffset = int64_t(expert) * cols * inner + (kBContiguous ? col0 * ldb : col0);
  float acc[kMicro][kMicro] = {}, acc3[kMicro][kMicro] = {};
  multiplyTile<true, kBContiguous, kDual>(a + int64_t(rowBegin) * inner, inner, rowEnd - rowBegin,
                                          w + bOffset, kDual ? w3 + bOffset : nullptr, ldb,
                                          cols - col0, inner, acc, acc3);

  const int ty = int(threadIdx.x) / (kTile / kMicro), tx = int(threadIdx.x) % (kTile / kMicro);
  for (int i = 0; i < kMicro; ++i) {
    const int row = rowBegin + ty * kMicro + i;
    if (row >= rowEnd) break;
    for (int j = 0; j < kMicro; ++j) {
      const int col = col0 + tx * kMicro + j;
      if (col >= cols) break;
      const int64_t at = int64_t(row) * cols + col;
      const float c = acc[i][j];
      if constexpr (kEpilogue == Epilogue::Store) {
        ep.out[at] = c;
      } else if constexpr (kEpilogue == Epilogue::Accumulate) {
        ep.out[at] += c;
      } else if constexpr (kEpilogue == Epilogue::GeluForward) {
        ep.out[at] = c;
        ep.h[at] = activation::gelu(c);
      } else if constexpr (kEpilogue == Epilogue::ReluForward) {
        ep.out[at] = c;
        ep.h[at] = activation::relu(c);
      } else if constexpr (kEpilogue == Epilogue::SwigluForward) {
        ep.out[at] = c;
        ep.out3[at] = acc3[i][j];
        ep.h[at] = activation::swiglu(c, acc3[i][j]);
      } else if constexpr (kEpilogue == Epilogue::GeluBackward) {
        ep.out[at] = c * activation::geluGrad(ep.a1[at]);
      } else if constexpr (kEpilogue == Epilogue::ReluBackward) {
        ep.out[at] = activation::reluBackward(ep.a1[at], c);
      } else {
        static_assert(kEpilogue == Epilogue::SwigluBackward, "every epilogue is handled");
        activation::swigluBackward(ep.a1[at], ep.a3[at], c, ep.out[at], ep.out3[at]);
      }
    }
  }
}

__global__ void __launch_bounds__(kGemmThreads)
    weightGradKernel(const float* dOut, const float* a, const int32_t* start, int N, int K,
                     float* dW) {
  const int expert = int(blockIdx.z);
  const int rowBegin = start[expert] - start[0], rows = start[expert + 1] - start[expert];
  if (rows == 0) return;
  const int n0 = int(blockIdx.y) * kTile, k0 = int(blockIdx.x) * kTile;
  // A(i = n, k = row) = dOut[row·N + n], B(j = col, k = row) = a[row·K + col]: both contiguous in i/j.
  float acc[kMicro][kMicro] = {}, unused[kMicro][kMicro] = {};
  multiplyTile<false, false, false>(dOut + int64_t(rowBegin) * N + n0, N, N - n0,
                                    a + int64_t(rowBegin) * K + k0, nullptr, K, K - k0, rows, acc,
                                    unused);

  float* dWe = dW + int64_t(expert) * N * K;
  const int ty = int(threadIdx.x) / (kTile / kMicro), tx = int(threadIdx.x) % (kTile / kMicro);
  for (int i = 0; i < kMicro; ++i) {
    const int n = n0 + ty * kMicro + i;
    if (n >= N) break;
    for (int j = 0; j < kMicro; ++j) {
      const int k = k0 + tx * kMicro + j;
      if (k >= K) break;
      dWe[int64_t(n) * K + k] += acc[i][j];
    }
  }
}

constexpr size_t stageBytes(bool dual) { return size_t(dual ? 3 : 2) * kStageFloats * sizeof(float); }

template <bool kBContiguous, Epilogue kEpilogue>
void launchRowGrouped(const char* name, const float* a, const float* w, const float* w3,
                      const ExpertRows& rows, int cols, int inner, const EpilogueArgs& ep,
                      cudaStream_t stream) {
  if (rows.tiles == 0 || cols == 0) return;
  const int64_t colTiles = (cols + kTile - 1) / kTile;
  if (rows.tiles > INT32_MAX || colTiles > kMaxColumnTiles)
    throw Error(ErrorKind::Shape, std::string(name) + ": the grid of " + std::to_string(rows.tiles) +
                                      " row tiles × " + std::to_string(colTiles) +
                                      " column tiles exceeds CUDA's limits (2³¹−1 × 65535)");
  const dim3 grid(unsigned(rows.tiles), unsigned(colTiles));
  checkLaunch(moekit::launch<rowGroupedGemmKernel<kBContiguous, kEpilogue>>(
                  grid, kGemmThreads, stageBytes(kEpilogue == Epilogue::SwigluForward), stream, a,
                  w, w3, rows.start, rows.experts, cols, inner, ep),
              name);
}

}  // namespace

int64_t rowTiles(const int32_t* counts, int experts) {
  int64_t tiles = 0;
  for (int e = 0; e < experts; ++e) tiles += (counts[e] + kTile - 1) / kTile;
  return tiles;
}

void expertUpProjection(Activation act, const float* x, const float* w1, const float* w3,
                        const ExpertRows& rows, int F, int K, float* a1, float* a3, float* h,
                        cudaStream_t stream) {
  EpilogueArgs ep;
  ep.out = a1;
  ep.out3 = a3;
  ep.h = h;
  switch (act) {
    case Activation::Swiglu:
      launchRowGrouped<true, Epilogue::SwigluForward>("rowGroupedGemmKernel<NT, SwigluForward>", x,
                                                      w1, w3, rows, F, K, ep, stream);
      break;
    case Activation::Gelu:
      launchRowGrouped<true, Epilogue::GeluForward>("rowGroupedGemmKernel<NT, GeluForward>", x, w1,
                                                    nullptr, rows, F, K, ep, stream);
      break;
    case Activation::Relu:
      launchRowGrouped<true, Epilogue::ReluForward>("rowGroupedGemmKernel<NT, ReluForward>", x, w1,
                                                    nullptr, rows, F, K, ep, stream);
      break;
  }
}

void groupedGemmNT(const float* a, const float* w, const ExpertRows& rows, int N, int K, float* out,
                   cudaStream_t stream) {
  EpilogueArgs ep;
  ep.out = out;
  launchRowGrouped<true, Epilogue::Store>("rowGroupedGemmKernel<NT, Store>", a, w, nullptr, rows,
                                          N, K, ep, stream);
}

void groupedGemmNN(const float* dOut, const float* w, const ExpertRows& rows, int N, int K,
                   bool accumulate, float* dA, cudaStream_t stream) {
  EpilogueArgs ep;
  ep.out = dA;
  if (accumulate)
    launchRowGrouped<false, Epilogue::Accumulate>("rowGroupedGemmKernel<NN, Accumulate>", dOut, w,
                                                  nullptr, rows, K, N, ep, stream);
  else
    launchRowGrouped<false, Epilogue::Store>("rowGroupedGemmKernel<NN, Store>", dOut, w, nullptr,
                                             rows, K, N, ep, stream);
}

void expertActivationBackward(Activation act, const float* dOut, const float* w2,
                              const ExpertRows& rows, int H, int F, const float* a1,
                              const float* a3, float* da1, float* da3, cudaStream_t stream) {
  EpilogueArgs ep;
  ep.out = da1;
  ep.out3 = da3;
  ep.a1 = a1;
  ep.a3 = a3;
  // dh [rows,F] = dOut [rows,H] · w2_e [H,F]: NN with N = H, K = F.
  switch (act) {
    case Activation::Swiglu:
      launchRowGrouped<false, Epilogue::SwigluBackward>("rowGroupedGemmKernel<NN, SwigluBackward>",
                                                        dOut, w2, nullptr, rows, F, H, ep, stream);
      break;
    case Activation::Gelu:
      launchRowGrouped<false, Epilogue::GeluBackward>("rowGroupedGemmKernel<NN, GeluBackward>",
                                                      dOut, w2, nullptr, rows, F, H, ep, stream);
      break;
    case Activation::Relu:
      launchRowGrouped<false, Epilogue::ReluBackward>("rowGroupedGemmKernel<NN, ReluBackward>",
                                                      dOut, w2, nullptr, rows, F, H, ep, stream);
      break;
  }
}

void groupedGemmTN(const float* dOut, const float* a, const ExpertRows& rows, int N, int K,
                   float* dW, cudaStream_t stream) {
  if (rows.experts == 0 || N == 0 || K == 0) return;
  const int64_t nTiles = (N + kTile - 1) / kTile;
  if (nTiles > kMaxColumnTiles || rows.experts > 65535)
    throw Error(ErrorKind::Shape, "weightGradKernel: N = " + std::to_string(N) + " (" +
                                      std::to_string(nTiles) + " tiles) or " +
                                      std::to_string(rows.experts) +
                                      " experts exceed CUDA's grid limit of 65535");
  const dim3 grid(unsigned((K + kTile - 1) / kTile), unsigned(nTiles), unsigned(rows.experts));
  checkLaunch(moekit::launch<weightGradKernel>(grid, kGemmThreads, stageBytes(false), stream, dOut,
                                               a, rows.start, N, K, dW),
              "weightGradKernel");
}

}  // namespace moekit::cuda
