// L1–L4 of router_losses.h on the device (L5: router_orthogonality.cu). Math (core/losses.h):
//
//   L1  per segment σ (weight w_σ: 1, or 1/#sequences for L3) and balance group g (experts
//       [e0, e1), width n_g; members S = tokens of σ allowed to e0):
//         B_σg = coeff·n_g·Σ_{i∈g} f_i·P_i,  f_i = count_i/(counted·k),  P_i = (Σ_{t∈S} s̃[t,i])/|S|
//         value = Σ_σ Σ_g w_σ·|S|/|σ| · B_σg
//       count_i = selections of i by S (L2: the window's), counted = |S| (L2: the window's tokens)
//       ∂value/∂s̃[t,i] = w_σ·|S|/|σ| · coeff·n_g·f_i/|S| for t ∈ S, else 0
//       then s̃ → s (balanceProbsRowBackward) → logits (routing::scoresRowBackward)
//   L4  Z = coeff·(Σ_t lse_t²)/T, ∂Z/∂l[t,e] = zLossGrad(coeff, lse_t, l[t,e], T) for allowed e
//
// Kernels and thread mappings:
//   balanceRowsKernel       one thread per token: s̃ row and its divisor (balanceProbsRow, the
//                           CPU's sequential loops), zeroes s̃ of the groups the token is not a
//                           member of, counts members and member selections per (segment, group /
//                           expert) with integer atomics (exact, so order-free).
//   (column_sums.h)         P per (segment, expert): fixed-order column sums of the masked s̃.
//   balanceGroupsKernel     one thread per (segment, group): B_σg (loadBalanceValue, sequential
//                           over the group's experts) and the per-expert gradient w_σ·|S|/|σ|·
//                           coeff·n_g·f_i/|S| with the CPU's expressions.
//   balanceBackwardKernel   one thread per token: the row's ∂/∂s̃, then s̃ → s → logits, added to
//                           dLogits (rows of scratch in global memory, as routing.cu).
//   zRowsKernel             one thread per token: lse (routing::logSumExpRow), lse², gradient.
// Each loss value is the fixed-order total (column_sums.h scaledSum) of its per-group / per-token
// terms.
#include "router_losses.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/losses.h"
#include "../core/routing.h"
#include "column_sums.h"
#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"
#include "stream_buffer.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 128;

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

std::string str(int64_t v) { return std::to_string(v); }

unsigned blocksFor(int64_t n) { return gridBlocks(n, kThreads); }

// ---- L1–L3 ---------------------------------------------------------------------------------------

struct BalanceDevice {
  int T, E, k, G, segments;
  bool sigmoid, window;
  double coeff, segmentWeight;
  const int64_t* groupStart;         // [G+1]
  const int64_t* groupOf;            // [E]
  const int64_t* segStart;           // [segments+1]
  const int64_t* windowCounts;       // [E] window only
  const int64_t* windowGroupTokens;  // [G] window only
};

// The segment holding token t (segStart ascending, segStart[0] ≤ t < segStart[segments]).
__device__ int segmentOf(const int64_t* segStart, int segments, int t) {
  int lo = 0, hi = segments - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (segStart[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

__global__ void balanceRowsKernel(BalanceDevice a, const double* s, const uint8_t* allowed,
                                  const int32_t* selIdx, double* sn, double* sSum, int32_t* members,
                                  int32_t* counts) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= a.T) return;
  const int seg = segmentOf(a.segStart, a.segments, t);
  const int64_t row = int64_t(t) * a.E;
  const uint8_t* allowedRow = allowed ? allowed + row : nullptr;
  sSum[t] = losses::balanceProbsRow(s + row, a.E, a.sigmoid, sn + row);
  for (int g = 0; g < a.G; ++g) {
    const int e0 = int(a.groupStart[g]), e1 = int(a.groupStart[g + 1]);
    if (routing::isAllowed(allowedRow, e0)) {
      atomicAdd(&members[seg * a.G + g], 1);
    } else {
      for (int e = e0; e < e1; ++e) sn[row + e] = 0.0;
    }
  }
  if (a.window) return;
  for (int j = 0; j < a.k; ++j) {
    const int e = selIdx[int64_t(t) * a.k + j];
    if (e < 0 || e >= a.E) continue;
    if (routing::isAllowed(allowedRow, int(a.groupStart[a.groupOf[e]])))
      atomicAdd(&counts[int64_t(seg) * a.E + e], 1);
  }
}

__global__ void balanceGroupsKernel(BalanceDevice a, const double* P, const int32_t* members,
                                    const int32_t* counts, double* groupValue, double* gradCoeff) {
  const int i = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (i >= a.segments * a.G) return;
  const int seg = i / a.G, g = i % a.G;
  const int e0 = int(a.groupStart[g]), e1 = int(a.groupStart[g + 1]), width = e1 - e0;
  const int S = members[i];
  const int64_t length = a.segStart[seg + 1] - a.segStart[seg];
  double* grad = gradCoeff + int64_t(seg) * a.E + e0;
  if (S == 0) {
    groupValue[i] = 0;
    for (int e = 0; e < width; ++e) grad[e] = 0;
    return;
  }
  const double share = a.segmentWeight * S / length;
  const double counted = a.window ? double(a.windowGroupTokens[g]) : double(S);
  const double* colSums = P + int64_t(seg) * a.E + e0;
  const int32_t* segCounts = counts + int64_t(seg) * a.E + e0;
  groupValue[i] =
      share * (a.window ? losses::loadBalanceValue(colSums, a.windowCounts + e0, S, width, counted,
                                                   a.k, a.coeff)
                        : losses::loadBalanceValue(colSums, segCounts, S, width, counted, a.k,
                                                   a.coeff));
  for (int e = 0; e < width; ++e) {
    const double count = a.window ? double(a.windowCounts[e0 + e]) : double(segCounts[e]);
    const double probGrad =
        counted > 0 ? losses::loadBalanceProbGrad(a.coeff, width,
                                                  losses::balanceFraction(count, counted, a.k), S)
                    : 0.0;
    grad[e] = share * probGrad;
  }
}

__global__ void balanceBackwardKernel(BalanceDevice a, const double* s, const uint8_t* allowed,
                                      const double* sn, const double* sSum,
                                      const double* gradCoeff, double* d, double* dLogits) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= a.T) return;
  const int seg = segmentOf(a.segStart, a.segments, t);
  const int64_t row = int64_t(t) * a.E;
  const uint8_t* allowedRow = allowed ? allowed + row : nullptr;
  double* dRow = d + row;
  for (int g = 0; g < a.G; ++g) {
    const int e0 = int(a.groupStart[g]), e1 = int(a.groupStart[g + 1]);
    const bool member = routing::isAllowed(allowedRow, e0);
    for (int e = e0; e < e1; ++e) dRow[e] = member ? gradCoeff[int64_t(seg) * a.E + e] : 0.0;
  }
  losses::balanceProbsRowBackward(sn + row, sSum[t], a.E, a.sigmoid, dRow);
  routing::scoresRowBackward(s + row, allowedRow, a.E,
                             a.sigmoid ? routing::ScoreFn::Sigmoid : routing::ScoreFn::Softmax,
                             dRow, dLogits + row);
}

// ---- L4 ------------------------------------------------------------------------------------------

__global__ void zRowsKernel(int T, int E, double coeff, const double* logits,
                            const uint8_t* allowed, double* lseSquared, double* dLogits) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= T) return;
  const int64_t row = int64_t(t) * E;
  const uint8_t* allowedRow = allowed ? allowed + row : nullptr;
  const double* l = logits + row;
  const double lse = routing::logSumExpRow(l, allowedRow, E);
  if (!std::isfinite(lse)) {
    lseSquared[t] = 0;
    return;
  }
  lseSquared[t] = lse * lse;
  for (int e = 0; e < E; ++e)
    if (routing::isAllowed(allowedRow, e)) dLogits[row + e] += losses::zLossGrad(coeff, lse, l[e], T);
}

}  // namespace

// ---- launchers -----------------------------------------------------------------------------------

void balanceLoss(const BalanceArgs& a, const double* s, const uint8_t* allowed,
                 const int32_t* selIdx, double* dLogits, double* value, cudaStream_t stream) {
  const int T = a.T, E = a.E;
  if (T < 0) fail(ErrorKind::Shape, "balanceLoss: T: expected a non-negative token count, got " + str(T));
  if (E < 1) fail(ErrorKind::Shape, "balanceLoss: E: expected a positive expert count, got " + str(E));
  if (a.k < 1 || a.k > E)
    fail(ErrorKind::Argument, "balanceLoss: k: expected an integer in [1, " + str(E) + "], got " + str(a.k));
  if (!std::isfinite(a.coeff))
    fail(ErrorKind::Argument, "balanceLoss: coeff: expected a finite number, got " + std::to_string(a.coeff));
  const int G = int(a.groupStart.size()) - 1;
  if (G < 1 || a.groupStart[0] != 0 || a.groupStart[size_t(G)] != E)
    fail(ErrorKind::Argument, "balanceLoss: groupStart: expected [G+1] offsets from 0 to E = " + str(E) +
                                  ", got " + str(int64_t(a.groupStart.size())) + " entries");
  for (int g = 0; g < G; ++g)
    if (a.groupStart[size_t(g) + 1] <= a.groupStart[size_t(g)])
      fail(ErrorKind::Argument, "balanceLoss: groupStart: expected strictly ascending offsets, got " +
                                    str(a.groupStart[size_t(g)]) + " then " + str(a.groupStart[size_t(g) + 1]));
  const bool window = a.scope == RouterSpec::Scope::Global;
  std::vector<int64_t> segStart{0};
  if (a.scope == RouterSpec::Scope::Sequence) {
    if (a.seqLens.empty() && T > 0)
      fail(ErrorKind::Argument, "balanceLoss: seqLens: required when the scope is 'sequence'");
    for (size_t i = 0; i < a.seqLens.size(); ++i) {
      if (a.seqLens[i] <= 0)
        fail(ErrorKind::Argument, "balanceLoss: seqLens[" + str(int64_t(i)) +
                                      "]: expected a positive length, got " + str(a.seqLens[i]));
      segStart.push_back(segStart.back() + a.seqLens[i]);
    }
    if (segStart.back() != T)
      fail(ErrorKind::Shape, "balanceLoss: seqLens: expected lengths summing to the token count " +
                                 str(T) + ", got " + str(segStart.back()));
  } else {
    segStart.push_back(T);
  }
  if (window && (int64_t(a.windowCounts.size()) != E || int64_t(a.windowGroupTokens.size()) != G))
    fail(ErrorKind::Shape, "balanceLoss: windowCounts / windowGroupTokens: expected " + str(E) + " / " +
                               str(G) + " entries for the 'global' scope, got " +
                               str(int64_t(a.windowCounts.size())) + " / " +
                               str(int64_t(a.windowGroupTokens.size())));
  if (T > 0 && (!s || !selIdx || !dLogits))
    fail(ErrorKind::Argument, std::string("balanceLoss: ") + (!s ? "s" : !selIdx ? "selIdx" : "dLogits") +
                                  ": expected a device buffer, got null");
  if (!value) fail(ErrorKind::Argument, "balanceLoss: value: expected a device word, got null");
  if (T == 0) return scaledSum(nullptr, 0, 1.0, 1.0, value, stream);
  const int segments = int(segStart.size()) - 1;
  int64_t longest = 0;
  for (int i = 0; i < segments; ++i) longest = std::max(longest, segStart[size_t(i) + 1] - segStart[size_t(i)]);

  // One upload of the small tables: groupStart | groupOf | segStart | windowCounts | groupTokens.
  std::vector<int64_t> tables(a.groupStart.begin(), a.groupStart.end());
  for (int g = 0; g < G; ++g)
    for (int e = a.groupStart[size_t(g)]; e < a.groupStart[size_t(g) + 1]; ++e) tables.push_back(g);
  tables.insert(tables.end(), segStart.begin(), segStart.end());
  if (window) {
    tables.insert(tables.end(), a.windowCounts.begin(), a.windowCounts.end());
    tables.insert(tables.end(), a.windowGroupTokens.begin(), a.windowGroupTokens.end());
  }
  StreamBuffer<int64_t> tablesDevice(tables.size(), stream, "balance tables");
  checkCuda(copyAsync(tablesDevice.get(), tables.data(), tables.size() * sizeof(int64_t),
                            cudaMemcpyHostToDevice, stream),
            "cudaMemcpyAsync of the balance tables to the device");
  BalanceDevice d{};
  d.T = T;
  d.E = E;
  d.k = a.k;
  d.G = G;
  d.segments = segments;
  d.sigmoid = a.sigmoid;
  d.window = window;
  d.coeff = a.coeff;
  d.segmentWeight = a.scope == RouterSpec::Scope::Sequence ? 1.0 / double(segments) : 1.0;
  d.groupStart = tablesDevice.get();
  d.groupOf = d.groupStart + G + 1;
  d.segStart = d.groupOf + E;
  d.windowCounts = window ? d.segStart + segments + 1 : nullptr;
  d.windowGroupTokens = window ? d.windowCounts + E : nullptr;

  const size_t tE = size_t(T) * E, sE = size_t(segments) * E, sG = size_t(segments) * G;
  StreamBuffer<double> sn(tE, stream, "balance s̃"), dRows(tE, stream, "balance row gradients");
  StreamBuffer<double> sSum(size_t(T), stream, "balance s̃ divisors");
  StreamBuffer<double> P(sE, stream, "balance column sums"), grad(sE, stream, "balance gradients");
  StreamBuffer<double> groupValue(sG, stream, "balance group values");
  StreamBuffer<int32_t> members(sG, stream, "balance members"), counts(sE, stream, "balance counts");
  checkCuda(cudaMemsetAsync(members.get(), 0, sG * sizeof(int32_t), stream),
            "cudaMemsetAsync of the balance members");
  checkCuda(cudaMemsetAsync(counts.get(), 0, sE * sizeof(int32_t), stream),
            "cudaMemsetAsync of the balance counts");
  checkLaunch(launch<balanceRowsKernel>(dim3(blocksFor(T)), dim3(kThreads), 0, stream, d, s, allowed,
                                        selIdx, sn.get(), sSum.get(), members.get(), counts.get()),
              "balanceRowsKernel");
  segmentColumnSums(sn.get(), T, E, d.segStart, segments, longest, P.get(), stream);
  checkLaunch(launch<balanceGroupsKernel>(dim3(blocksFor(int64_t(sG))), dim3(kThreads), 0, stream, d,
                                          P.get(), members.get(), counts.get(), groupValue.get(),
                                          grad.get()),
              "balanceGroupsKernel");
  checkLaunch(launch<balanceBackwardKernel>(dim3(blocksFor(T)), dim3(kThreads), 0, stream, d, s,
                                            allowed, sn.get(), sSum.get(), grad.get(), dRows.get(),
                                            dLogits),
              "balanceBackwardKernel");
  scaledSum(groupValue.get(), int64_t(sG), 1.0, 1.0, value, stream);
}

void zLoss(int T, int E, double coeff, const double* logits, const uint8_t* allowed,
           double* dLogits, double* value, cudaStream_t stream) {
  if (T < 0) fail(ErrorKind::Shape, "zLoss: T: expected a non-negative token count, got " + str(T));
  if (E < 1) fail(ErrorKind::Shape, "zLoss: E: expected a positive expert count, got " + str(E));
  if (!std::isfinite(coeff))
    fail(ErrorKind::Argument, "zLoss: coeff: expected a finite number, got " + std::to_string(coeff));
  if (T > 0 && (!logits || !dLogits))
    fail(ErrorKind::Argument, std::string("zLoss: ") + (!logits ? "logits" : "dLogits") +
                                  ": expected a device buffer, got null");
  if (!value) fail(ErrorKind::Argument, "zLoss: value: expected a device word, got null");
  if (T == 0) return scaledSum(nullptr, 0, 1.0, 1.0, value, stream);
  StreamBuffer<double> lseSquared(size_t(T), stream, "z-loss terms");
  checkLaunch(launch<zRowsKernel>(dim3(blocksFor(T)), dim3(kThreads), 0, stream, T, E, coeff, logits,
                                  allowed, lseSquared.get(), dLogits),
              "zRowsKernel");
  scaledSum(lseSquared.get(), T, coeff, double(T), value, stream);
}

}  // namespace moekit::cuda
