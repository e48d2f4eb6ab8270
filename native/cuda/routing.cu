// cuda::routeTopK (routing.h): the row math of core/routing.h on the device. Kernels and their
// thread mappings:
//
//   expertNormsKernel   affinity only: one thread per expert e, wNorm[e] = routing::rowNorm(W_e).
//   logitsKernel        one thread per (token t, expert e), flat index t·E + e: l[t,e] =
//                       routing::linearLogitsRow (R1) or routing::cosineLogitsRow (R8) called on
//                       the single row W_e (E = 1), i.e. the same 4-accumulator float64 order as
//                       the CPU's loop over all experts.
//   routeKernel         one thread per token t, calling the row functions in cpu::Router's order:
//                       scoresRow (R3) → biasKeyRow (R4) or sampledKeyRow (R10) → limitGroupsRow
//                       (R5) → topKRow (R6) → weightsRow (R7). Rows of s, q and the group scores
//                       live in global memory (s is the [T,E] output, q and groupScore are
//                       scratch), so the thread holds no per-expert array in registers.
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

struct RouteArgs {
  int T, E, k;
  routing::ScoreFn fn;
  bool sampled, normalize;
  double scale, penalty;
  int limitGroups, limitTopGroups;
  uint64_t seed, step;
};

__global__ void expertNormsKernel(const float* W, int E, int H, double* wNorm) {
  const int e = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (e >= E) return;
  wNorm[e] = routing::rowNorm(W + int64_t(e) * H, H);
}

// wNorm null → linear logits (R1); else cosine logits over temperature (R8).
__global__ void logitsKernel(const float* x, const float* W, const double* wNorm, int T, int E,
                             int H, double temperature, double* logits) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(T) * E) return;
  const int64_t t = i / E, e = i % E;
  const float* xt = x + t * H;
  const float* we = W + e * H;
  if (wNorm) {
    double cos;
    routing::cosineLogitsRow(xt, we, wNorm + e, H, 1, temperature, &cos, logits + i);
  } else {
    routing::linearLogitsRow(xt, we, H, 1, logits + i);
  }
}

// One thread per token. bias / load / allowed may be null (see routing.h). found[t] = how many
// experts topKRow found (< k: the host reports the token).
__global__ void routeKernel(RouteArgs a, const double* logits, const uint8_t* allowed,
                            const float* bias, const double* load, double* s, double* q,
                            double* groupScore, double* wScratch, int32_t* idx, float* weights,
                            int32_t* found) {
  const int t = int(blockIdx.x) * int(blockDim.x) + int(threadIdx.x);
  if (t >= a.T) return;
  const int64_t row = int64_t(t) * a.E, slots = int64_t(t) * a.k;
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
  const int n = routing::topKRow(qt, a.E, a.k, idx + slots);
  found[t] = n;
  if (n < a.k) return;
  double* w = wScratch + slots;
  routing::weightsRow(st, idx + slots, a.k, a.normalize, a.scale, w);
  for (int j = 0; j < a.k; ++j) weights[slots + j] = float(w[j]);
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
  const int G = spec.limitGroups > 0 ? spec.limitGroups : 0;
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
  if (affinity)
    checkCuda(launch<expertNormsKernel>(dim3(blocksFor(E)), dim3(kThreads), 0, st, dW.get(), E, H,
                                        dNorm.reserve(size_t(E), "expert norms")),
              "cuda::routeTopK: expertNormsKernel");
  checkCuda(launch<logitsKernel>(dim3(blocksFor(int64_t(tE))), dim3(kThreads), 0, st, dX.get(),
                                 dW.get(), affinity ? dNorm.get() : nullptr, T, E, H,
                                 spec.temperature, logits),
            "cuda::routeTopK: logitsKernel");

  RouteArgs a{};
  a.T = T;
  a.E = E;
  a.k = k;
  a.fn = affinity ? routing::ScoreFn::Softmax : spec.score;
  a.sampled = sampled;
  a.normalize = spec.normalize;
  a.scale = spec.scale;
  a.penalty = spec.loadPenalty;
  a.limitGroups = G;
  a.limitTopGroups = spec.limitTopGroups;
  a.seed = spec.seed;
  a.step = step;
  const uint8_t* allowedDevice = allowed ? dAllowed.get() : nullptr;
  const float* biasDevice = useBias ? dBias.get() : nullptr;
  const double* loadDevice = sampled ? dLoad.get() : nullptr;
  double* groupScore = G > 0 ? dGroup.reserve(size_t(T) * G, "group scores") : nullptr;
  double* s = dS.reserve(tE, "scores");
  double* q = dQ.reserve(tE, "keys");
  double* wScratch = dWScratch.reserve(tk, "weights (f64)");
  int32_t* idx = dIdx.reserve(tk, "indices");
  float* weights = dWeights.reserve(tk, "weights");
  int32_t* found = dFound.reserve(size_t(T), "found");
  checkCuda(launch<routeKernel>(dim3(blocksFor(T)), dim3(kThreads), 0, st, a, logits, allowedDevice,
                                biasDevice, loadDevice, s, q, groupScore, wScratch, idx, weights,
                                found),
            "cuda::routeTopK: routeKernel");

  std::vector<int32_t> foundHost(static_cast<size_t>(T));
  copy(foundHost.data(), found, size_t(T) * sizeof(int32_t), cudaMemcpyDeviceToHost, st, "found");
  copy(out.indices.data(), idx, tk * sizeof(int32_t), cudaMemcpyDeviceToHost, st, "indices");
  copy(out.weights.data(), weights, tk * sizeof(float), cudaMemcpyDeviceToHost, st, "weights");
  copy(out.scores.data(), s, tE * sizeof(double), cudaMemcpyDeviceToHost, st, "scores");
  checkCuda(cudaStreamSynchronize(st), "cuda::routeTopK: cudaStreamSynchronize");
  for (int t = 0; t < T; ++t)
    if (foundHost[size_t(t)] < k)
      fail(ErrorKind::Argument, "x: token " + std::to_string(t) + " has " +
                                    std::to_string(foundHost[size_t(t)]) +
                                    " experts with a finite selection key, router.topK is " +
                                    std::to_string(k) + " (non-finite input or router.weight?)");
}

}  // namespace moekit::cuda
