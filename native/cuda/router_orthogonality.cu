// L5 of router_losses.h (orthogonalityLoss) on the device. Math (core/losses.h, as
// cpu::routerOrthogonality):
//   ŵ_e = w_e/‖w_e‖ (0 for a zero row), R = ŴŴᵀ − I, c_ij = orthPairWeight (0 when a row is zero)
//   value = Σ_ij c_ij R_ij²        (the CPU: Σ_{i≤j} with the off-diagonal terms doubled)
//   ∂/∂ŵ_i = Σ_j 4·c_ij·R_ij·ŵ_j  = (M·Ŵ)_i with M_ij = 4·c_ij·R_ij
//   ∂/∂w_i = (∂/∂ŵ_i − (∂/∂ŵ_i·ŵ_i)·ŵ_i)/‖w_i‖   (0 for a zero row)
//
// Kernels and thread mappings:
//   orthRowsKernel     one block of 256 per expert row: ‖w_e‖ by a fixed tree, then ŵ_e.
//   productKernel<…>   a 16×16 output tile per block of 256 threads, one output per thread; the
//                      inner dimension is staged 16 at a time through shared memory and summed by
//                      the thread in ascending order (the CPU's order): the Gram matrix ŴŴᵀ, then
//                      M·Ŵ.
//   orthPairsKernel    one thread per pair (i, j): c_ij, the value term c·R², M_ij.
//   orthGradKernel     one block of 256 per expert row: the radial part by a fixed tree, ∂/∂w_e.
// The value is the fixed-order total (column_sums.h scaledSum) of the E² pair terms.
#include "router_losses.h"

#include <cmath>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/losses.h"
#include "column_sums.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"
#include "stream_buffer.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 128;     // one-thread-per-pair kernel
constexpr int kRowThreads = 256;  // block-per-row kernels
constexpr int kTile = 16;         // productKernel tile

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

std::string str(int64_t v) { return std::to_string(v); }

unsigned blocksFor(int64_t n) { return gridBlocks(n, kThreads); }

// Σ over the block of each thread's v, by a fixed tree (strides 128, 64, …, 1); every thread gets
// the total. Called by all kRowThreads threads of the block.
__device__ double blockSum(double v) {
  __shared__ double partial[kRowThreads];
  const int tid = int(threadIdx.x);
  partial[tid] = v;
  __syncthreads();
  for (int stride = kRowThreads / 2; stride > 0; stride /= 2) {
    if (tid < stride) partial[tid] += partial[tid + stride];
    __syncthreads();
  }
  const double sum = partial[0];
  __syncthreads();  // the array may be reused by the next call
  return sum;
}

__global__ void __launch_bounds__(kRowThreads)
    orthRowsKernel(const float* W, int H, double* norm, double* unit) {
  const int64_t row = int64_t(blockIdx.x) * H;
  double acc = 0;
  for (int h = int(threadIdx.x); h < H; h += kRowThreads) {
    const double w = W[row + h];
    acc += w * w;
  }
  const double n = std::sqrt(blockSum(acc));
  if (threadIdx.x == 0) norm[blockIdx.x] = n;
  for (int h = int(threadIdx.x); h < H; h += kRowThreads)
    unit[row + h] = n > 0 ? double(W[row + h]) / n : 0.0;
}

// C [M,N] = A [M,K] · B with B(k, n) = B[n·ldb + k] (kBTransposed) or B[k·ldb + n]; A row-major
// with leading dimension lda. Each C element is one thread's sum over k = 0, 1, … in order.
template <bool kBTransposed>
__global__ void __launch_bounds__(kTile * kTile)
    productKernel(const double* A, int64_t lda, const double* B, int64_t ldb, int M, int N, int K,
                  double* C) {
  __shared__ double aTile[kTile][kTile + 1];  // [m][k]
  __shared__ double bTile[kTile][kTile + 1];  // [k][n]
  const int tx = int(threadIdx.x) % kTile, ty = int(threadIdx.x) / kTile;
  const int m = int(blockIdx.y) * kTile + ty, n = int(blockIdx.x) * kTile + tx;
  double acc = 0;
  for (int k0 = 0; k0 < K; k0 += kTile) {
    // Both loads read 16 consecutive elements of one row per half-warp.
    const int am = int(blockIdx.y) * kTile + ty, ak = k0 + tx;
    aTile[ty][tx] = am < M && ak < K ? A[int64_t(am) * lda + ak] : 0.0;
    if constexpr (kBTransposed) {
      const int bn = int(blockIdx.x) * kTile + ty, bk = k0 + tx;
      bTile[tx][ty] = bn < N && bk < K ? B[int64_t(bn) * ldb + bk] : 0.0;
    } else {
      const int bk = k0 + ty, bn = int(blockIdx.x) * kTile + tx;
      bTile[ty][tx] = bk < K && bn < N ? B[int64_t(bk) * ldb + bn] : 0.0;
    }
    __syncthreads();
    const int steps = K - k0 < kTile ? K - k0 : kTile;
    for (int k = 0; k < steps; ++k) acc += aTile[ty][k] * bTile[k][tx];
    __syncthreads();
  }
  if (m < M && n < N) C[int64_t(m) * N + n] = acc;
}

struct OrthDevice {
  int E;
  OrthMode mode;
  double coeff;
  const int32_t* groupOf;  // [E]
  const int32_t* sizeOf;   // [E] size of each expert's group
};

__global__ void orthPairsKernel(OrthDevice a, const double* norm, const double* gram,
                                double* term, double* M) {
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= int64_t(a.E) * a.E) return;
  const int i = int(p / a.E), j = int(p % a.E);
  const double c = losses::orthPairWeight(a.mode, a.coeff, a.E, a.groupOf[i], a.groupOf[j],
                                          a.sizeOf[i], a.sizeOf[j]);
  if (c == 0 || !(norm[i] > 0) || !(norm[j] > 0)) {
    term[p] = 0;
    M[p] = 0;
    return;
  }
  const double r = gram[p] - (i == j ? 1.0 : 0.0);
  term[p] = c * r * r;
  M[p] = 4 * c * r;
}

__global__ void __launch_bounds__(kRowThreads)
    orthGradKernel(const double* unit, const double* dUnit, const double* norm, int H, double* dW) {
  const int64_t row = int64_t(blockIdx.x) * H;
  const double n = norm[blockIdx.x];
  double acc = 0;
  for (int h = int(threadIdx.x); h < H; h += kRowThreads) acc += dUnit[row + h] * unit[row + h];
  const double radial = blockSum(acc);
  for (int h = int(threadIdx.x); h < H; h += kRowThreads)
    dW[row + h] = n > 0 ? (dUnit[row + h] - radial * unit[row + h]) / n : 0.0;
}

template <bool kBTransposed>
void product(const double* A, int64_t lda, const double* B, int64_t ldb, int M, int N, int K,
             double* C, cudaStream_t stream, const char* name) {
  const dim3 grid(unsigned((N + kTile - 1) / kTile), unsigned((M + kTile - 1) / kTile));
  checkLaunch(launch<productKernel<kBTransposed>>(grid, dim3(kTile * kTile), 0, stream, A, lda, B,
                                                  ldb, M, N, K, C),
              name);
}

}  // namespace

void orthogonalityLoss(int E, int H, const std::vector<int>& groupSizes, OrthMode mode,
                       double coeff, const float* W, double* dW, double* value, cudaStream_t stream) {
  if (E < 1 || H < 1)
    fail(ErrorKind::Shape, "orthogonalityLoss: W: expected a non-empty [E, H], got [" + str(E) + ", " +
                               str(H) + "]");
  if (mode != OrthMode::All && mode != OrthMode::PerGroup && mode != OrthMode::CrossGroup)
    fail(ErrorKind::Argument, "orthogonalityLoss: mode: expected all, perGroup or crossGroup, got " +
                                  str(int(mode)));
  if (!std::isfinite(coeff))
    fail(ErrorKind::Argument, "orthogonalityLoss: coeff: expected a finite number, got " +
                                  std::to_string(coeff));
  std::vector<int32_t> groupTables;  // groupOf [E] | sizeOf [E]
  std::vector<int32_t> sizeOf;
  for (size_t g = 0; g < groupSizes.size(); ++g) {
    if (groupSizes[g] < 1)
      fail(ErrorKind::Argument, "orthogonalityLoss: groupSizes[" + str(int64_t(g)) +
                                    "]: expected a positive size, got " + str(groupSizes[g]));
    for (int i = 0; i < groupSizes[g]; ++i) {
      groupTables.push_back(int32_t(g));
      sizeOf.push_back(groupSizes[g]);
    }
  }
  if (int64_t(groupTables.size()) != E)
    fail(ErrorKind::Argument, "orthogonalityLoss: groupSizes: expected sizes summing to E = " + str(E) +
                                  ", got " + str(int64_t(groupTables.size())));
  if (!W || !dW || !value)
    fail(ErrorKind::Argument, std::string("orthogonalityLoss: ") + (!W ? "W" : !dW ? "dW" : "value") +
                                  ": expected a device buffer, got null");
  groupTables.insert(groupTables.end(), sizeOf.begin(), sizeOf.end());
  StreamBuffer<int32_t> tables(groupTables.size(), stream, "orthogonality group tables");
  checkCuda(copyAsync(tables.get(), groupTables.data(), groupTables.size() * sizeof(int32_t),
                            cudaMemcpyHostToDevice, stream),
            "cudaMemcpyAsync of the orthogonality group tables to the device");
  const size_t eH = size_t(E) * H, eE = size_t(E) * E;
  StreamBuffer<double> norm(size_t(E), stream, "row norms"), unit(eH, stream, "unit rows");
  StreamBuffer<double> gram(eE, stream, "Gram matrix"), term(eE, stream, "orthogonality terms");
  StreamBuffer<double> M(eE, stream, "pair gradients"), dUnit(eH, stream, "unit-row gradients");
  checkLaunch(launch<orthRowsKernel>(dim3(unsigned(E)), dim3(kRowThreads), 0, stream, W, H,
                                     norm.get(), unit.get()),
              "orthRowsKernel");
  product<true>(unit.get(), H, unit.get(), H, E, E, H, gram.get(), stream, "productKernel<Gram>");
  OrthDevice d{E, mode, coeff, tables.get(), tables.get() + E};
  checkLaunch(launch<orthPairsKernel>(dim3(blocksFor(int64_t(eE))), dim3(kThreads), 0, stream, d,
                                      norm.get(), gram.get(), term.get(), M.get()),
              "orthPairsKernel");
  product<false>(M.get(), E, unit.get(), H, E, H, E, dUnit.get(), stream, "productKernel<M·Ŵ>");
  checkLaunch(launch<orthGradKernel>(dim3(unsigned(E)), dim3(kRowThreads), 0, stream, unit.get(),
                                     dUnit.get(), norm.get(), H, dW),
              "orthGradKernel");
  scaledSum(term.get(), int64_t(eE), 1.0, 1.0, value, stream);
}

}  // namespace moekit::cuda
