// routerBackward (router_backward.h): cpu::Router::backward on the device. Math, per token t:
//   top-k   ds_t = R7 backward of dSlot_t at s_t, idx_t (routing::weightsRowBackward)
//   R9      ds[t,e] = Σ of the picks' ecDw at (t, e)
//   dl_t = dLogitsAux_t + R3 backward of ds_t (routing::scoresRowBackward)
//   with ∂l_te/∂x_t = α·W_e − βx·x_t, ∂l_te/∂W_e = α·x_t − βw·W_e (routing::logitPartials):
//   A[t,e] = f32(dl·α)        dx += A·W,   dW += Aᵀ·x                    (fp32 GEMMs)
//   R8 self terms             dx_t −= f32((Σ_e dl·βx)·x_t),   dW_e += f32(orth_e − (Σ_t dl·βw)·W_e)
//
// Kernels in launch order and their thread mappings:
//   ecScatterKernel     expert-choice only (after ds is zeroed): one thread per pick, one add to its
//                       own (token, expert) entry — the pairs are distinct, so no two threads meet.
//   tokenGradKernel     one thread per token, the CPU's row loops in its order: ds (top-k), dl,
//                       A, Σ_e dl·βx, and the R8 terms dl·βw. Rows of ds and dl live in global
//                       scratch (as routing.cu), so the thread holds no per-expert array.
//   rowRangeKernel      one thread: the row offsets {0, T} of the GEMMs' single "expert".
//   grouped_gemm.h      NN dx += A·W (inner index e), TN dW += Aᵀ·x (inner index t): each output
//                       one thread's fmaf chain in ascending inner order.
//   (column_sums.h)     R8: Σ_t dl·βw per expert, fixed-order column sums.
//   dxSelfKernel        R8: one thread per (t, h).
//   dWeightTermsKernel  R8 or orthogonality: one thread per (e, h).
#include "router_backward.h"

#include <cmath>
#include <string>

#include "../core/errors.h"
#include "../core/logit_grad.h"
#include "../core/routing.h"
#include "column_sums.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"
#include "grouped_gemm.h"
#include "stream_buffer.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 128;

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

std::string str(int64_t v) { return std::to_string(v); }

unsigned blocksFor(int64_t n) { return gridBlocks(n, kThreads); }

__global__ void ecScatterKernel(int64_t n, int T, int E, const int32_t* token,
                                const int32_t* expert, const float* dw, double* ds) {
  const int64_t a = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (a >= n) return;
  const int t = token[a], e = expert[a];
  if (t < 0 || t >= T || e < 0 || e >= E) return;
  ds[int64_t(t) * E + e] += dw[a];
}

struct TokenGradArgs {
  RouterBackwardArgs a;
  const double* s;
  const int32_t* idx;
  const double* dSlot;
  const uint8_t* allowed;
  const double* dLogitsAux;
  const double* xNorm;
  const double* wNorm;
  const double* cos;
};

// ds, dl [T,E] scratch (ds already holds the R9 picks for expert-choice); A [T,E] f32;
// selfX [T] = Σ_e dl·βx; betaWTerms [T,E] = dl·βw (affinity only, else null).
__global__ void tokenGradKernel(TokenGradArgs g, double* ds, double* dl, float* A, double* selfX,
                                double* betaWTerms) {
  const RouterBackwardArgs& a = g.a;
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= a.T) return;
  const int64_t row = int64_t(t) * a.E;
  double* dsRow = ds + row;
  double* dlRow = dl + row;
  if (!a.expertChoice) {
    for (int e = 0; e < a.E; ++e) dsRow[e] = 0.0;
    routing::weightsRowBackward(g.s + row, g.idx + int64_t(t) * a.k, a.k, a.normalize, a.scale,
                                g.dSlot + int64_t(t) * a.k, dsRow);
  }
  for (int e = 0; e < a.E; ++e) dlRow[e] = g.dLogitsAux ? g.dLogitsAux[row + e] : 0.0;
  routing::scoresRowBackward(g.s + row, g.allowed ? g.allowed + row : nullptr, a.E, a.fn, dsRow,
                             dlRow);
  double self = 0;
  for (int e = 0; e < a.E; ++e) {
    const routing::LogitPartials p =
        a.affinity ? routing::logitPartials(true, g.xNorm[t], g.wNorm[e], g.cos[row + e], a.temperature)
                   : routing::logitPartials(false, 0.0, 0.0, 0.0, a.temperature);
    const double d = dlRow[e];
    A[row + e] = float(d * p.alpha);
    self += d * p.betaX;
    if (betaWTerms) betaWTerms[row + e] = d * p.betaW;
  }
  selfX[t] = self;
}

__global__ void rowRangeKernel(int T, int32_t* start) {
  start[0] = 0;
  start[1] = T;
}

__global__ void dxSelfKernel(int T, int H, const double* selfX, const float* x, float* dx) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(T) * H) return;
  dx[i] -= float(selfX[i / H] * x[i]);
}

// selfW [E] (null = 0), orth [E,H] (null = 0).
__global__ void dWeightTermsKernel(int E, int H, const double* selfW, const double* orth,
                                   const float* W, float* dW) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(E) * H) return;
  const double self = selfW ? selfW[i / H] : 0.0;
  dW[i] += float((orth ? orth[i] : 0.0) - self * W[i]);
}

}  // namespace

void routerBackward(const RouterBackwardArgs& a, const double* s, const int32_t* idx,
                    const double* dSlot, const int32_t* ecToken, const int32_t* ecExpert,
                    const float* ecDw, int64_t ecN, const uint8_t* allowed,
                    const double* dLogitsAux, const float* x, const float* W, const double* xNorm,
                    const double* wNorm, const double* cos, const double* dWeightOrth, float* dx,
                    float* dW, cudaStream_t stream) {
  const int T = a.T, E = a.E, H = a.H;
  auto need = [](const void* p, const char* name) {
    if (!p)
      fail(ErrorKind::Argument,
           std::string("routerBackward: ") + name + ": expected a device buffer, got null");
  };
  if (T < 0 || E < 1 || H < 1)
    fail(ErrorKind::Shape, "routerBackward: expected T >= 0, E >= 1, H >= 1, got T " + str(T) +
                               ", E " + str(E) + ", H " + str(H));
  if (a.expertChoice ? a.k != 0 : (a.k < 1 || a.k > E))
    fail(ErrorKind::Argument, "routerBackward: k: expected " +
                                  std::string(a.expertChoice ? "0 for expert-choice"
                                                             : "an integer in [1, " + str(E) + "]") +
                                  ", got " + str(a.k));
  if (ecN < 0) fail(ErrorKind::Shape, "routerBackward: ecN: expected >= 0, got " + str(ecN));
  if (!std::isfinite(a.scale))
    fail(ErrorKind::Argument, "routerBackward: scale: expected a finite number");
  if (a.affinity && !(a.temperature > 0 && std::isfinite(a.temperature)))
    fail(ErrorKind::Argument, "routerBackward: temperature: expected a positive number");
  need(W, "W");
  need(dW, "dW");
  if (T > 0) {
    need(s, "s");
    need(x, "x");
    need(dx, "dx");
    if (!a.expertChoice) {
      need(idx, "idx");
      need(dSlot, "dSlot");
    }
    if (a.affinity) {
      need(xNorm, "xNorm");
      need(wNorm, "wNorm");
      need(cos, "cos");
    }
  }
  if (a.expertChoice && ecN > 0) {
    need(ecToken, "ecToken");
    need(ecExpert, "ecExpert");
    need(ecDw, "ecDw");
  }

  const size_t tE = size_t(T) * E;
  StreamBuffer<double> ds(tE, stream, "score gradients"), dl(tE, stream, "logit gradients");
  StreamBuffer<float> A(tE, stream, "logit gradients (f32)");
  StreamBuffer<double> selfX(size_t(T), stream, "R8 x self terms");
  StreamBuffer<double> betaWTerms(a.affinity ? tE : 0, stream, "R8 weight self terms");
  StreamBuffer<double> selfW(a.affinity ? size_t(E) : 0, stream, "R8 weight self sums");
  StreamBuffer<int32_t> rowRange(2, stream, "GEMM row range");
  if (T > 0) {
    if (a.expertChoice) {
      checkCuda(cudaMemsetAsync(ds.get(), 0, tE * sizeof(double), stream),
                "cudaMemsetAsync of the score gradients");
      if (ecN > 0)
        checkLaunch(launch<ecScatterKernel>(dim3(blocksFor(ecN)), dim3(kThreads), 0, stream, ecN, T,
                                            E, ecToken, ecExpert, ecDw, ds.get()),
                    "ecScatterKernel");
    }
    const TokenGradArgs g{a, s, idx, dSlot, allowed, dLogitsAux, xNorm, wNorm, cos};
    checkLaunch(launch<tokenGradKernel>(dim3(blocksFor(T)), dim3(kThreads), 0, stream, g, ds.get(),
                                        dl.get(), A.get(), selfX.get(), betaWTerms.get()),
                "tokenGradKernel");
    checkLaunch(launch<rowRangeKernel>(dim3(1), dim3(1), 0, stream, T, rowRange.get()),
                "rowRangeKernel");
    const ExpertRows rows{rowRange.get(), 1, rowTiles(&T, 1)};
    groupedGemmNN(A.get(), W, rows, E, H, true, dx, stream);
    groupedGemmTN(A.get(), x, rows, E, H, dW, stream);
    if (a.affinity) {
      segmentColumnSums(betaWTerms.get(), T, E, nullptr, 1, T, selfW.get(), stream);
      checkLaunch(launch<dxSelfKernel>(dim3(blocksFor(int64_t(T) * H)), dim3(kThreads), 0, stream, T,
                                       H, selfX.get(), x, dx),
                  "dxSelfKernel");
    }
  }
  if ((a.affinity && T > 0) || dWeightOrth)
    checkLaunch(launch<dWeightTermsKernel>(dim3(blocksFor(int64_t(E) * H)), dim3(kThreads), 0, stream,
                                           E, H, T > 0 ? selfW.get() : nullptr, dWeightOrth, W,
                                           dW),
                "dWeightTermsKernel");
}

}  // namespace moekit::cuda
