// The routing kernels of routing.h: the row math of core/routing.h on the device. Kernels and
// their thread mappings:
//
//   expertNormsKernel   affinity only: one thread per expert e, wNorm[e] = routing::rowNorm(W_e).
//   tokenNormsKernel    affinity only: one thread per token t, xNorm[t] = routing::rowNorm(x_t)
//                       (the router backward's R8 partials).
//   logitsKernel        one thread per (token t, expert e), flat index t·E + e: l[t,e] =
//                       routing::linearLogitsRow (R1) or routing::cosineLogitsRow (R8) called on
//                       the single row W_e (E = 1), i.e. the same 4-accumulator float64 order as
//                       the CPU's loop over all experts; R8 also stores cos[t,e].
//   selectKernel        one thread per token t, calling the row functions in cpu::Router's order:
//                       scoresRow (R3) → biasKeyRow (R4) or sampledKeyRow (R10) → limitGroupsRow
//                       (R5) → topKRow (R6). Rows of s, q and the group scores live in global
//                       memory (s and q are outputs, the group scores scratch), so the thread holds
//                       no per-expert array in registers.
//   weightsKernel       one thread per token: weightsRow (R7) over the token's final experts (after
//                       capacity, which may reroute), rounded once to f32.
//
// Correctness first: one thread per token is serial in E (topKRow is O(k·E)); a warp per token is
// the next step once the decisions are pinned by the tests.
#include "routing.h"

#include <string>

#include "../core/errors.h"
#include "../core/routing.h"
#include "cuda_check.h"
#include "emu/launch.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 128;

__global__ void expertNormsKernel(const float* W, int E, int H, double* wNorm) {
  const int e = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (e >= E) return;
  wNorm[e] = routing::rowNorm(W + int64_t(e) * H, H);
}

__global__ void tokenNormsKernel(const float* x, int T, int H, double* xNorm) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= T) return;
  xNorm[t] = routing::rowNorm(x + int64_t(t) * H, H);
}

// wNorm null → linear logits (R1); else cosine logits over temperature (R8), cos stored when not null.
__global__ void logitsKernel(const float* x, const float* W, const double* wNorm, int T, int E,
                             int H, double temperature, double* cos, double* logits) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(T) * E) return;
  const int64_t t = i / E, e = i % E;
  const float* xt = x + t * H;
  const float* we = W + e * H;
  if (wNorm) {
    double c;
    routing::cosineLogitsRow(xt, we, wNorm + e, H, 1, temperature, &c, logits + i);
    if (cos) cos[i] = c;
  } else {
    routing::linearLogitsRow(xt, we, H, 1, logits + i);
  }
}

// One thread per token. bias / load / allowed may be null (see routing.h). found[t] = how many
// experts topKRow found (< k: the host reports the token).
__global__ void selectKernel(SelectArgs a, const double* logits, const uint8_t* allowed,
                             const float* bias, const double* load, double* s, double* q,
                             double* groupScore, int32_t* idx, int32_t* found) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= a.T) return;
  const int64_t row = int64_t(t) * a.E;
  const uint8_t* allowedRow = allowed ? allowed + row : nullptr;
  double* st = s + row;
  double* qt = q + row;
  routing::scoresRow(logits + row, allowedRow, a.E, a.fn, st);
  if (a.sampled)
    routing::sampledKeyRow(st, load, a.penalty, allowedRow, a.E, a.seed, a.step, t, qt);
  else
    routing::biasKeyRow(st, bias, allowedRow, a.E, qt);
  if (a.limitGroups > 0)
    routing::limitGroupsRow(qt, a.E, a.limitGroups, a.limitTopGroups,
                            groupScore + int64_t(t) * a.limitGroups);
  const int n = routing::topKRow(qt, a.E, a.k, idx + int64_t(t) * a.k);
  for (int j = n; j < a.k; ++j) idx[int64_t(t) * a.k + j] = 0;  // defined, never a decision: found < k throws
  found[t] = n;
}

// One thread per token: R7 over idx, float64 scratch wScratch [T,k], rounded once to f32.
__global__ void weightsKernel(int T, int E, int k, bool normalize, double scale, const double* s,
                              const int32_t* idx, double* wScratch, float* weights) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= T) return;
  const int64_t slots = int64_t(t) * k;
  double* w = wScratch + slots;
  routing::weightsRow(s + int64_t(t) * E, idx + slots, k, normalize, scale, w);
  for (int j = 0; j < k; ++j) weights[slots + j] = float(w[j]);
}

int blocksFor(int64_t n) { return int((n + kThreads - 1) / kThreads); }

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

// A stream for one call, destroyed on every exit.
class Stream {
 public:
  Stream() {
    checkCuda(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking),
              "cuda::routeTopK: cudaStreamCreateWithFlags");
  }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream,
          const char* what) {
  if (bytes == 0) return;
  checkCuda(cudaMemcpyAsync(dst, src, bytes, kind, stream),
            std::string("cuda::routeTopK: cudaMemcpyAsync of ") + what +
                (kind == cudaMemcpyHostToDevice ? " to the device" : " to the host"));
}

}  // namespace

void expertNorms(const float* W, int E, int H, double* wNorm, cudaStream_t stream) {
  checkCuda(launch<expertNormsKernel>(dim3(blocksFor(E)), dim3(kThreads), 0, stream, W, E, H, wNorm),
            "expertNormsKernel");
}

void tokenNorms(const float* x, int T, int H, double* xNorm, cudaStream_t stream) {
  if (T == 0) return;
  checkCuda(launch<tokenNormsKernel>(dim3(blocksFor(T)), dim3(kThreads), 0, stream, x, T, H, xNorm),
            "tokenNormsKernel");
}

void routerLogits(const float* x, const float* W, const double* wNorm, int T, int E, int H,
                  double temperature, double* cos, double* logits, cudaStream_t stream) {
  const int64_t n = int64_t(T) * E;
  if (n == 0) return;
  checkCuda(launch<logitsKernel>(dim3(blocksFor(n)), dim3(kThreads), 0, stream, x, W, wNorm, T, E,
                                 H, temperature, cos, logits),
            "logitsKernel");
}

void selectExperts(const SelectArgs& a, const double* logits, const uint8_t* allowed,
                   const float* bias, const double* load, double* s, double* q,
                   double* groupScore, int32_t* idx, int32_t* found, cudaStream_t stream) {
  if (a.T == 0) return;
  checkCuda(launch<selectKernel>(dim3(blocksFor(a.T)), dim3(kThreads), 0, stream, a, logits,
                                 allowed, bias, load, s, q, groupScore, idx, found),
            "selectKernel");
}

void routingWeights(int T, int E, int k, bool normalize, double scale, const double* s,
                    const int32_t* idx, double* wScratch, float* weights, cudaStream_t stream) {
  if (T == 0) return;
  checkCuda(launch<weightsKernel>(dim3(blocksFor(T)), dim3(kThreads), 0, stream, T, E, k, normalize,
                                  scale, s, idx, wScratch, weights),
            "weightsKernel");
}

void checkFound(const std::vector<int32_t>& found, int k) {
  for (size_t t = 0; t < found.size(); ++t)
    if (found[t] < k)
      fail(ErrorKind::Argument, "x: token " + std::to_string(t) + " has " + std::to_string(found[t]) +
                                    " experts with a finite selection key, router.topK is " +
                                    std::to_string(k) + " (non-finite input or router.weight?)");
}

SelectArgs selectArgsOf(const RouterSpec& spec, int T, int E, uint64_t step) {
  const bool affinity = spec.type == RouterSpec::Type::Affinity;
  SelectArgs a;
  a.T = T;
  a.E = E;
  a.k = spec.topK;
  a.fn = affinity ? routing::ScoreFn::Softmax : spec.score;
  a.sampled = spec.type == RouterSpec::Type::Sampled;
  a.penalty = spec.loadPenalty;
  a.limitGroups = spec.limitGroups > 0 ? spec.limitGroups : 0;
  a.limitTopGroups = spec.limitTopGroups;
  a.seed = spec.seed;
  a.step = step;
  return a;
}

void routeTopK(const RouterSpec& spec, const float* x, int T, const float* weight,
               const float* bias, const float* load, const uint8_t* allowed, uint64_t step,
               TopKRouting& out) {
  int E = 0;
  for (int g : spec.groupSizes) E += g;
  const int H = spec.hidden, k = spec.topK;
  const bool sampled = spec.type == RouterSpec::Type::Sampled;
  const bool affinity = spec.type == RouterSpec::Type::Affinity;
  if (spec.type == RouterSpec::Type::ExpertChoice)
    fail(ErrorKind::Argument, "cuda::routeTopK: expert-choice routing (R9) is not supported");
  if (H <= 0 || E <= 0) fail(ErrorKind::Argument, "cuda::routeTopK: expected positive hidden and E");
  if (k < 1 || k > E)
    fail(ErrorKind::Argument, "router.topK: expected an integer in [1, " + std::to_string(E) +
                                  "], got " + std::to_string(k));
  if (spec.limitGroups != 0 && (spec.limitGroups < 0 || E % spec.limitGroups != 0))
    fail(ErrorKind::Argument, "router.groupLimited.groups: expected a divisor of the expert count");
  if (T < 0) fail(ErrorKind::Shape, "x: expected a non-negative token count, got " + std::to_string(T));
  if (T > 0 && !x) fail(ErrorKind::Argument, "x: expected a [T, hidden] f32 buffer, got null");
  if (!weight) fail(ErrorKind::Argument, "router.weight: expected an [E, hidden] f32 buffer, got null");
  if (spec.useBias && !bias)
    fail(ErrorKind::Argument, "router.bias: required when router.bias is true");
  if (sampled && !load) fail(ErrorKind::Argument, "router.load: required by the 'sampled' router (R10)");

  out = TopKRouting();
  out.tokens = T;
  out.k = k;
  out.experts = E;
  out.indices.assign(size_t(T) * k, 0);
  out.weights.assign(size_t(T) * k, 0.0f);
  out.scores.assign(size_t(T) * E, 0.0);
  if (T == 0) return;

  Stream stream;
  const cudaStream_t st = stream.get();
  const size_t xSize = size_t(T) * H, wSize = size_t(E) * H, tE = size_t(T) * E, tk = size_t(T) * k;
  const SelectArgs a = selectArgsOf(spec, T, E, step);
  DeviceBuffer<float> dX, dW, dBias;
  DeviceBuffer<double> dNorm, dLoad, dLogits, dS, dQ, dGroup, dWScratch;
  DeviceBuffer<uint8_t> dAllowed;
  DeviceBuffer<int32_t> dIdx, dFound;
  DeviceBuffer<float> dWeights;
  copy(dX.reserve(xSize, "x"), x, xSize * sizeof(float), cudaMemcpyHostToDevice, st, "x");
  copy(dW.reserve(wSize, "router.weight"), weight, wSize * sizeof(float), cudaMemcpyHostToDevice,
       st, "router.weight");
  const bool useBias = spec.useBias && !sampled;
  if (useBias)
    copy(dBias.reserve(size_t(E), "router.bias"), bias, size_t(E) * sizeof(float),
         cudaMemcpyHostToDevice, st, "router.bias");
  std::vector<double> load64;
  if (sampled) {  // R10 reads ℓ in float64, as cpu::Router
    load64.assign(load, load + E);
    copy(dLoad.reserve(size_t(E), "router.load"), load64.data(), size_t(E) * sizeof(double),
         cudaMemcpyHostToDevice, st, "router.load");
  }
  if (allowed)
    copy(dAllowed.reserve(tE, "allowed"), allowed, tE, cudaMemcpyHostToDevice, st, "allowed");

  double* logits = dLogits.reserve(tE, "logits");
  const double* wNorm = nullptr;
  if (affinity) {
    expertNorms(dW.get(), E, H, dNorm.reserve(size_t(E), "expert norms"), st);
    wNorm = dNorm.get();
  }
  routerLogits(dX.get(), dW.get(), wNorm, T, E, H, spec.temperature, nullptr, logits, st);
  double* groupScore = a.limitGroups > 0 ? dGroup.reserve(size_t(T) * a.limitGroups, "group scores") : nullptr;
  double* s = dS.reserve(tE, "scores");
  int32_t* idx = dIdx.reserve(tk, "indices");
  int32_t* found = dFound.reserve(size_t(T), "found");
  selectExperts(a, logits, allowed ? dAllowed.get() : nullptr, useBias ? dBias.get() : nullptr,
                sampled ? dLoad.get() : nullptr, s, dQ.reserve(tE, "keys"), groupScore, idx, found, st);
  float* weights = dWeights.reserve(tk, "weights");
  routingWeights(T, E, k, spec.normalize, spec.scale, s, idx, dWScratch.reserve(tk, "weights (f64)"),
                 weights, st);

  std::vector<int32_t> foundHost(static_cast<size_t>(T));
  copy(foundHost.data(), found, size_t(T) * sizeof(int32_t), cudaMemcpyDeviceToHost, st, "found");
  copy(out.indices.data(), idx, tk * sizeof(int32_t), cudaMemcpyDeviceToHost, st, "indices");
  copy(out.weights.data(), weights, tk * sizeof(float), cudaMemcpyDeviceToHost, st, "weights");
  copy(out.scores.data(), s, tE * sizeof(double), cudaMemcpyDeviceToHost, st, "scores");
  checkCuda(cudaStreamSynchronize(st), "cuda::routeTopK: cudaStreamSynchronize");
  checkFound(foundHost, k);
}

}  // namespace moekit::cuda
