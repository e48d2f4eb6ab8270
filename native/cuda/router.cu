// cuda::Router (router.h): validation and the order of the device stages. The kernels here are
// two small gathers; the stages' kernels live in the files router.h lists.
//
//   gatherScoresKernel  one thread per expert-choice pick a: weight[a] = float(s[token[a], expert[a]])
//   widenKernel         one thread per expert e: load64[e] = double(load[e]) (R10 reads ℓ in float64)
//   compactKeptKernel   one block of kCompactThreads threads over the T·k slots, each thread a
//                       contiguous run of them: it counts its kept slots, the block scans the
//                       counts (shared memory, Hillis–Steele), and each thread writes its kept
//                       slots from its exclusive offset — the token-major assignment lists of
//                       cpu::Router (token = slot / k, expert = idx[slot], weight = weights[slot])
//                       and each assignment's slot
//   scatterSlotsKernel  one thread per assignment a: dSlot[slot[a]] = dAssignWeight[a] (dropped
//                       slots keep the 0 they were set to)
#include "router.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "../core/capacity.h"
#include "../core/errors.h"
#include "emu/launch.h"
#include "grid.h"
#include "router_backward.h"
#include "router_losses.h"
#include "router_stats.h"
#include "routing.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 128;
constexpr size_t kLossValues = 4;  // balance, its micro-batch term, z, orthogonality

__global__ void gatherScoresKernel(int64_t n, int E, const double* s, const int32_t* token,
                                   const int32_t* expert, float* weight) {
  const int64_t a = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (a >= n) return;
  weight[a] = float(s[int64_t(token[a]) * E + expert[a]]);
}

__global__ void widenKernel(int n, const float* in, double* out) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e < n) out[e] = double(in[e]);
}

constexpr int kCompactThreads = 256;

__global__ void compactKeptKernel(int64_t tk, int k, const int32_t* idx, const int32_t* keep, const float* weights,
                                  int32_t* token, int32_t* expert, float* weight, int32_t* slot) {
  __shared__ int64_t sums[kCompactThreads];
  const int64_t per = (tk + kCompactThreads - 1) / kCompactThreads;
  const int64_t begin = int64_t(threadIdx.x) * per, end = begin + per < tk ? begin + per : tk;
  int64_t count = 0;
  for (int64_t s = begin; s < end; ++s) count += keep[s] != 0;
  sums[threadIdx.x] = count;
  __syncthreads();
  for (int offset = 1; offset < kCompactThreads; offset *= 2) {
    const int64_t add = int(threadIdx.x) >= offset ? sums[threadIdx.x - offset] : 0;
    __syncthreads();
    sums[threadIdx.x] += add;
    __syncthreads();
  }
  int64_t a = sums[threadIdx.x] - count;
  for (int64_t s = begin; s < end; ++s) {
    if (!keep[s]) continue;
    token[a] = int32_t(s / k);
    expert[a] = idx[s];
    weight[a] = weights[s];
    slot[a] = int32_t(s);
    ++a;
  }
}

__global__ void scatterSlotsKernel(int64_t n, const int32_t* slot, const float* dAssignWeight, double* dSlot) {
  const int64_t a = globalThread();
  if (a < n) dSlot[slot[a]] = double(dAssignWeight[a]);
}

unsigned blocksFor(int64_t n) { return gridBlocks(n, kThreads); }

}  // namespace

Router::Router(RouterSpec spec)
    : spec_(std::move(spec)), layout_(checkRouterSpec(spec_)), window_(layout_) {
  E_ = layout_.E;
  H_ = layout_.H;
  affinity_ = spec_.type == RouterSpec::Type::Affinity;
  expertChoice_ = spec_.type == RouterSpec::Type::ExpertChoice;
  sampled_ = spec_.type == RouterSpec::Type::Sampled;
  stream_.open();
}

void Router::copyOnDevice(void* to, const void* from, size_t bytes, const char* what) {
  if (bytes == 0) return;
  checkCuda(copyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, stream_.get()),
            std::string("cuda::Router: cudaMemcpyAsync of ") + what + " on the device");
}

// ---- forward stages ----------------------------------------------------------------------------

// Copies x and router.weight for the backward (device to device); R1/R8 logits (R8: norms and cos kept for C4 and backward); R3 scores, R4/R10 keys, R5,
// and for top-k the R6 selection into selIdx_ (found_ checked by selectTopK).
void Router::computeScores(const float* x, const RouterParams& p) {
  const int T = T_, E = E_, H = H_;
  const size_t tE = size_t(T) * E;
  copyOnDevice(x_.reserve(size_t(T) * H, "x"), x, size_t(T) * H * sizeof(float), "x");
  copyOnDevice(w_.reserve(size_t(E) * H, "router.weight"), p.weight, size_t(E) * H * sizeof(float), "router.weight");
  if (!allowed_.empty()) stream_.upload(allowedDev_.reserve(tE, "allowed"), allowed_.data(), tE, "allowed");
  const double* wNorm = nullptr;
  double* cos = nullptr;
  if (affinity_) {
    expertNorms(w_.get(), E, H, wNorm_.reserve(size_t(E), "expert norms"), stream_.get());
    tokenNorms(x_.get(), T, H, xNorm_.reserve(size_t(T), "token norms"), stream_.get());
    wNorm = wNorm_.get();
    cos = cos_.reserve(tE, "cos");
  }
  routerLogits(x_.get(), w_.get(), wNorm, T, E, H, spec_.temperature, cos,
               logits_.reserve(tE, "logits"), stream_.get());

  const float* bias = spec_.useBias && !sampled_ && !expertChoice_ ? p.bias : nullptr;
  const double* load = nullptr;
  if (sampled_) {  // R10 reads ℓ in float64, as cpu::Router
    double* load64 = load64_.reserve(size_t(E), "router.load");
    checkLaunch(launch<widenKernel>(dim3(blocksFor(E)), dim3(kThreads), 0, stream_.get(), E, p.load, load64), "widenKernel");
    load = load64;
  }
  SelectArgs a = selectArgsOf(spec_, T, E, step_);
  if (expertChoice_) a.k = 0;  // scores only: R9 ranks columns of s
  double* groupScore =
      a.limitGroups > 0 ? groupScore_.reserve(size_t(T) * a.limitGroups, "group scores") : nullptr;
  selectExperts(a, logits_.get(), allowedDevice(), bias, load, s_.reserve(tE, "scores"),
                q_.reserve(tE, "keys"), groupScore,
                selIdx_.reserve(size_t(T) * (a.k > 0 ? a.k : 1), "selection"),
                found_.reserve(size_t(T), "found"), stream_.get());
}

// R6 counts, C1–C5, R7 over the final experts, accepted counts; the kept slots token-major.
void Router::selectTopK(Routing& out) {
  const int T = T_, E = E_, k = k_;
  const size_t tk = size_t(T) * k;
  int32_t* idx = idx_.reserve(tk, "indices");
  int32_t* keep = keep_.reserve(tk, "keep");
  checkCuda(copyAsync(idx, selIdx_.get(), tk * sizeof(int32_t), cudaMemcpyDeviceToDevice, stream_.get()),
            "cuda::Router: cudaMemcpyAsync of the selection");
  countSelections(T, k, E, selIdx_.get(), nullptr, counts_.reserve(size_t(E), "counts"), stream_.get());
  CapacityArgs ca;
  ca.T = T;
  ca.E = E;
  ca.k = k;
  ca.capacity = spec_.capacityFactor > 0 ? capacity::perExpert(spec_.capacityFactor, T, k, E) : 0;
  ca.policy = spec_.policy;
  const bool minAffinity = affinity_ && spec_.minAffinity > -INFINITY;
  ca.minAffinity = spec_.minAffinity;
  applyCapacity(ca, selIdx_.get(), s_.get(), q_.get(), minAffinity ? cos_.get() : nullptr, idx, keep,
                capacityScratch_, stream_.get());
  routingWeights(T, E, k, spec_.normalize, spec_.scale, s_.get(), idx, wScratch_.reserve(tk, "weights (f64)"),
                 weights_.reserve(tk, "weights"), stream_.get());
  countSelections(T, k, E, idx, keep, accepted_.reserve(size_t(E), "accepted"), stream_.get());
  int32_t* assignToken = assignToken_.reserve(tk, "assignment tokens");
  int32_t* assignExpert = assignExpert_.reserve(tk, "assignment experts");
  float* assignWeight = assignWeight_.reserve(tk, "assignment weights");
  checkLaunch(launch<compactKeptKernel>(dim3(1), dim3(kCompactThreads), 0, stream_.get(), int64_t(tk), k, idx, keep,
                                        weights_.get(), assignToken, assignExpert, assignWeight,
                                        assignSlotDevice_.reserve(tk, "assignment slots")),
              "compactKeptKernel");
  out.device = {idx, keep, weights_.get(), assignToken, assignExpert, assignWeight};

  unsigned long long* shortToken = shortToken_.reserve(1, "the first short token");
  findShortToken(found_.get(), T, k, shortToken, stream_.get());
  unsigned long long firstShort = 0;
  out.indices.resize(tk);
  out.keep.resize(tk);
  out.weights.resize(tk);
  stream_.download(&firstShort, shortToken, sizeof firstShort, "the first short token");
  stream_.download(out.indices.data(), idx, tk * sizeof(int32_t), "indices");
  // Without a capacity (C1) or a minimum affinity (C4) every slot is kept: keep need not come down.
  const bool canDrop = ca.capacity > 0 || minAffinity;
  if (canDrop) stream_.download(out.keep.data(), keep, tk * sizeof(int32_t), "keep");
  else std::fill(out.keep.begin(), out.keep.end(), 1);
  stream_.download(out.weights.data(), weights_.get(), tk * sizeof(float), "weights");
  stream_.download(out.counts.data(), counts_.get(), size_t(E) * sizeof(int32_t), "counts");
  stream_.download(out.accepted.data(), accepted_.get(), size_t(E) * sizeof(int32_t), "accepted");
  stream_.synchronize("forward (top-k decisions)");
  checkFound(firstShort, k);
  for (size_t slot = 0; slot < tk; ++slot) {
    if (!out.keep[slot]) continue;
    out.assignToken.push_back(int32_t(slot / size_t(k)));
    out.assignExpert.push_back(out.indices[slot]);
    out.assignWeight.push_back(out.weights[slot]);
  }
  kept_ = int64_t(out.assignToken.size());
}

// R9: C = min(ceil(factor·T·topK/E), T), factor 1 when dropless; weights s[t,e].
void Router::selectExpertChoice(Routing& out) {
  const int T = T_, E = E_;
  const double factor = spec_.capacityFactor > 0 ? spec_.capacityFactor : 1.0;
  const int64_t C = std::min<int64_t>(capacity::perExpert(factor, T, spec_.topK, E), T);
  const size_t most = size_t(E) * size_t(C);
  int32_t* token = pickToken_.reserve(most, "expert-choice tokens");
  int32_t* expert = pickExpert_.reserve(most, "expert-choice experts");
  picks_ = cuda::selectExpertChoice(T, E, C, s_.get(), allowedDevice(),
                                    counts_.reserve(size_t(E), "counts"), token, expert,
                                    expertChoiceScratch_, stream_.get());
  float* weight = weights_.reserve(size_t(picks_), "expert-choice weights");
  if (picks_ > 0)
    checkCuda(launch<gatherScoresKernel>(dim3(blocksFor(picks_)), dim3(kThreads), 0, stream_.get(), picks_,
                                         E, s_.get(), token, expert, weight),
              "cuda::Router: gatherScoresKernel");
  out.assignToken.resize(size_t(picks_));
  out.assignExpert.resize(size_t(picks_));
  out.assignWeight.resize(size_t(picks_));
  stream_.download(out.assignToken.data(), token, size_t(picks_) * sizeof(int32_t), "expert-choice tokens");
  stream_.download(out.assignExpert.data(), expert, size_t(picks_) * sizeof(int32_t), "expert-choice experts");
  stream_.download(out.assignWeight.data(), weight, size_t(picks_) * sizeof(float), "expert-choice weights");
  stream_.download(out.counts.data(), counts_.get(), size_t(E) * sizeof(int32_t), "counts");
  stream_.synchronize("forward (expert choice)");
  out.device.assignToken = token;
  out.device.assignExpert = expert;
  out.device.assignWeight = weight;
  out.accepted = out.counts;
}

// L1–L5 (this rank's token share of each, CountWindow::tokenShare; global balance with its
// micro-batch term): the values into the device words lossValues_ [balance, its micro-batch term,
// z, orthogonality], read by computeStats' one wait; the gradients stay on the device
// (dLogitsAux_, dWeightOrth_) for backward.
void Router::computeLosses(const std::vector<int>& seqLens) {
  const int T = T_, E = E_;
  const double share = window_.tokenShare();
  double* dLogits = dLogitsAux_.reserve(size_t(T) * E + 1, "aux-loss logit gradients");
  double* values = lossValues_.reserve(kLossValues, "loss values");
  checkCuda(cudaMemsetAsync(values, 0, kLossValues * sizeof(double), stream_.get()),
            "cuda::Router: cudaMemsetAsync of the loss values");
  checkCuda(cudaMemsetAsync(dLogits, 0, size_t(T) * E * sizeof(double), stream_.get()),
            "cuda::Router: cudaMemsetAsync of the aux-loss logit gradients");
  if (spec_.balanceCoeff != 0 && !expertChoice_ && T > 0) {
    const bool byGroup = !allowed_.empty();
    BalanceArgs b;
    b.T = T;
    b.E = E;
    b.k = k_;
    b.sigmoid = scoreFn() == routing::ScoreFn::Sigmoid;
    b.coeff = spec_.balanceCoeff * share;
    b.scope = spec_.scope;
    b.groupStart = byGroup ? layout_.groupStart : std::vector<int>{0, E};
    b.seqLens = seqLens;
    b.windowCounts = window_.counts();
    b.windowGroupTokens = byGroup ? window_.groupTokens() : std::vector<int64_t>{window_.tokens()};
    balanceLoss(b, s_.get(), allowedDevice(), selIdx_.get(), dLogits, values, stream_.get());
    if (spec_.scope == RouterSpec::Scope::Global && spec_.balanceMicroFraction > 0) {
      b.coeff = spec_.balanceCoeff * spec_.balanceMicroFraction * share;
      b.scope = RouterSpec::Scope::Micro;
      balanceLoss(b, s_.get(), allowedDevice(), selIdx_.get(), dLogits, values + 1, stream_.get());
    }
  }
  if (spec_.zCoeff != 0 && T > 0)
    zLoss(T, E, spec_.zCoeff * share, logits_.get(), allowedDevice(), dLogits, values + 2, stream_.get());
  haveOrthogonality_ = spec_.orthCoeff != 0;
  if (haveOrthogonality_)
    orthogonalityLoss(E, H_, spec_.groupSizes, spec_.orthMode, spec_.orthCoeff * share, w_.get(),
                      dWeightOrth_.reserve(size_t(E) * H_, "orthogonality gradient"), values + 3, stream_.get());
}

// ExpertStats from the R6 counts (device) and s; then the stats and the loss values come to the
// host in one wait.
void Router::computeStats(Routing& out) {
  const int E = E_;
  out.f.assign(size_t(E), 0.0);
  out.P.assign(size_t(E), 0.0);
  double stats[3] = {0, 0, 0}, losses[kLossValues];
  if (T_ > 0) {
    expertStats(T_, E, spec_.topK, scoreFn() == routing::ScoreFn::Sigmoid, s_.get(), counts_.get(),
                f_.reserve(size_t(E), "f"), P_.reserve(size_t(E), "P"), stats3_.reserve(3, "stats"), stream_.get());
    stream_.download(out.f.data(), f_.get(), size_t(E) * sizeof(double), "f");
    stream_.download(out.P.data(), P_.get(), size_t(E) * sizeof(double), "P");
    stream_.download(stats, stats3_.get(), sizeof(stats), "stats");
  }
  stream_.download(losses, lossValues_.get(), sizeof(losses), "the loss values");
  stream_.synchronize("forward (stats and loss values)");
  out.maxVio = stats[0];
  out.cv = stats[1];
  out.entropy = stats[2];
  out.balance = losses[0] + losses[1];
  out.z = losses[2];
  out.orthogonality = losses[3];
  out.aux = out.balance + out.z + out.orthogonality;
}

// ---- forward -----------------------------------------------------------------------------------

void Router::forward(const float* x, int T, const int32_t* modality, const std::vector<int>& seqLens,
                     const RouterParams& p, Routing& out, bool training) {
  checkRouterInputs(spec_, layout_, x, T, modality, seqLens, p);
  haveForward_ = false;
  T_ = T;
  k_ = expertChoice_ ? 0 : spec_.topK;
  allowed_ = allowedMask(spec_, layout_, modality, T);
  kept_ = 0;
  picks_ = 0;
  out = Routing();
  out.tokens = T;
  out.k = k_;
  out.counts.assign(size_t(E_), 0);
  out.accepted.assign(size_t(E_), 0);

  // ---- decisions (may still throw on non-finite keys; the state below is untouched until then).
  if (T > 0) {
    computeScores(x, p);
    if (expertChoice_)
      selectExpertChoice(out);
    else
      selectTopK(out);
  } else {
    copyOnDevice(w_.reserve(size_t(E_) * H_, "router.weight"), p.weight, size_t(E_) * H_ * sizeof(float),
                 "router.weight");
  }

  // ---- window (L2, B1); an evaluation forward restores it below.
  CountWindow::Saved saved = window_.add(out.counts, T, allowed_, reducer_);
  computeLosses(seqLens);
  computeStats(out);
  if (!training) {  // no backward follows: only the results are kept (until the next forward)
    window_.restore(std::move(saved));
    releaseForwardScratch();
    releaseBackward();
    return;
  }

  // ---- R10 load estimate: ℓ ← (1 − decay)·ℓ + decay·f.
  if (p.load && T > 0) updateLoad(E_, spec_.loadDecay, f_.get(), p.load, stream_.get());
  ++step_;
  releaseForwardScratch();
  haveForward_ = true;
}

void Router::releaseForwardScratch() {
  for (DeviceBuffer<double>* b : {&load64_, &logits_, &q_, &groupScore_, &wScratch_, &f_, &P_, &stats3_, &lossValues_})
    b->release();
  for (DeviceBuffer<int32_t>* b : {&selIdx_, &found_, &counts_, &accepted_}) b->release();
  shortToken_.release();
  capacityScratch_.release();
  expertChoiceScratch_.threshold.release();
}

void Router::releaseBackward() {
  for (DeviceBuffer<float>* b : {&x_, &w_, &pickDw_}) b->release();
  for (DeviceBuffer<double>* b : {&s_, &cos_, &xNorm_, &wNorm_, &dLogitsAux_, &dWeightOrth_, &dSlot_}) b->release();
  allowedDev_.release();
}

void Router::releaseResults() {
  for (DeviceBuffer<float>* b : {&weights_, &assignWeight_}) b->release();
  for (DeviceBuffer<int32_t>* b : {&idx_, &keep_, &pickToken_, &pickExpert_, &assignToken_, &assignExpert_,
                                   &assignSlotDevice_})
    b->release();
}

// ---- backward ----------------------------------------------------------------------------------

void Router::backward(const float* dAssignWeight, float* dx, float* dWeight) {
  if (!haveForward_) throw Error(ErrorKind::Argument, "backward: called before a successful forward");
  const int T = T_, E = E_, H = H_, k = k_;
  const size_t assignments = expertChoice_ ? size_t(picks_) : size_t(kept_);
  if (assignments > 0 && !dAssignWeight)
    throw Error(ErrorKind::Argument, "dAssignWeight: expected one value per assignment, got null");
  if (T > 0 && !dx) throw Error(ErrorKind::Argument, "dx: expected a [T, hidden] f32 buffer, got null");
  if (!dWeight) throw Error(ErrorKind::Argument, "dWeight: expected an [E, hidden] f32 buffer, got null");

  const double* dSlot = nullptr;
  const float* pickDw = nullptr;
  if (expertChoice_) {
    pickDw = assignments > 0 ? dAssignWeight : pickDw_.reserve(1, "expert-choice weight gradients");
  } else {
    const size_t tk = size_t(T) * k;
    double* slots = dSlot_.reserve(tk + 1, "slot weight gradients");
    checkCuda(cudaMemsetAsync(slots, 0, tk * sizeof(double), stream_.get()), "cuda::Router: cudaMemsetAsync of dSlot");
    if (assignments > 0)
      checkLaunch(launch<scatterSlotsKernel>(dim3(blocksFor(int64_t(assignments))), dim3(kThreads), 0, stream_.get(),
                                             int64_t(assignments), assignSlotDevice_.get(), dAssignWeight, slots),
                  "scatterSlotsKernel");
    dSlot = slots;
  }

  RouterBackwardArgs a;
  a.T = T;
  a.E = E;
  a.H = H;
  a.k = k;
  a.fn = scoreFn();
  a.expertChoice = expertChoice_;
  a.affinity = affinity_;
  a.normalize = spec_.normalize;
  a.scale = spec_.scale;
  a.temperature = spec_.temperature;
  routerBackward(a, s_.get(), expertChoice_ ? nullptr : idx_.get(), dSlot, pickToken_.get(),
                 pickExpert_.get(), pickDw, picks_, allowedDevice(), dLogitsAux_.get(), x_.get(), w_.get(),
                 affinity_ ? xNorm_.get() : nullptr, affinity_ ? wNorm_.get() : nullptr,
                 affinity_ ? cos_.get() : nullptr, haveOrthogonality_ ? dWeightOrth_.get() : nullptr,
                 dx, dWeight, stream_.get());
  releaseBackward();
  releaseResults();
  haveForward_ = false;  // one backward per forward: it released what the forward kept
}

// ---- end of step -------------------------------------------------------------------------------

void Router::endStep(float* bias) {
  if (spec_.useBias && bias) {
    int64_t* counts = windowCounts_.reserve(size_t(E_), "window counts");
    stream_.upload(counts, window_.counts().data(), size_t(E_) * sizeof(int64_t), "window counts");
    updateBias(layout_.groupStart, spec_.biasUpdateRate, counts, bias, stream_.get());
    windowCounts_.release();
  }
  window_.reset();
}

}  // namespace moekit::cuda
