// cuda::selectExpertChoice (expert_choice.h): R9, equal to cpu::Router::selectExpertChoice. The
// ranking is capacity::rankKey(s[t,e], t): higher score first, ties → earlier token.
//
//   chooseTokensKernel       block = expert e (256 threads, threads stride over tokens): n = allowed
//                            tokens (__syncthreads_count per 256 tokens), take = min(C, n) into
//                            counts[e]; when take < n, selectKth (block_select.cuh) finds the key
//                            of the take-th best token of the column, kept as threshold[e] (with
//                            take = n every allowed token is taken: threshold = the lowest key).
//   writeAssignmentsKernel   block = expert e: base = Σ_{e' < e} counts[e'] (thread 0, O(E)); then
//                            in chunks of 256 tokens, in order, a token is taken when allowed and
//                            its key is atLeast threshold[e]; its place is base + the taken tokens
//                            before it: earlier chunks, earlier warps (per-warp __popc of a
//                            __ballot_sync, summed in shared memory) and lower lanes of its warp.
// Column reads s[t·E + e] are strided by E (one expert per block); the columns are short (T) and
// read 1 + 12 times.
#include "expert_choice.h"

#include <string>
#include <vector>

#include "block_select.cuh"
#include "emu/launch.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullWarp = 0xffffffffu;

[[noreturn]] void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

__device__ __forceinline__ bool allowedAt(const uint8_t* allowed, int t, int E, int e) {
  return !allowed || allowed[int64_t(t) * E + e];
}

__global__ void __launch_bounds__(kThreads)
    chooseTokensKernel(int T, int E, int64_t C, const double* s, const uint8_t* allowed,
                       int32_t* counts, capacity::RankKey* threshold) {
  const int e = int(blockIdx.x), tid = int(threadIdx.x);
  int n = 0;
  for (int t0 = 0; t0 < T; t0 += kThreads) {
    const int t = t0 + tid;
    n += __syncthreads_count(t < T && allowedAt(allowed, t, E, e));
  }
  const int take = int(C < n ? C : n);
  if (tid == 0) counts[e] = take;
  if (take == 0) return;
  capacity::RankKey key{0, 0};
  if (take < n)
    key = selectKth(T, take, 0, [&](int t, capacity::RankKey& k) {
      if (!allowedAt(allowed, t, E, e)) return false;
      k = capacity::rankKey(s[int64_t(t) * E + e], t);
      return true;
    });
  if (tid == 0) threshold[e] = key;
}

__global__ void __launch_bounds__(kThreads)
    writeAssignmentsKernel(int T, int E, const double* s, const uint8_t* allowed,
                           const int32_t* counts, const capacity::RankKey* threshold,
                           int32_t* token, int32_t* expert) {
  __shared__ int32_t base;
  __shared__ int32_t warpTaken[kWarps];
  const int e = int(blockIdx.x), tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  if (counts[e] == 0) return;
  if (tid == 0) {
    int32_t sum = 0;
    for (int i = 0; i < e; ++i) sum += counts[i];
    base = sum;
  }
  const capacity::RankKey cut = threshold[e];
  __syncthreads();
  int32_t done = base;  // taken tokens of the chunks before this one, plus base
  for (int t0 = 0; t0 < T; t0 += kThreads) {
    const int t = t0 + tid;
    const bool taken = t < T && allowedAt(allowed, t, E, e) &&
                       capacity::atLeast(capacity::rankKey(s[int64_t(t) * E + e], t), cut);
    const unsigned ballot = __ballot_sync(kFullWarp, taken);
    if (lane == 0) warpTaken[warp] = __popc(ballot);
    __syncthreads();
    int32_t before = 0, chunk = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (w < warp) before += warpTaken[w];
      chunk += warpTaken[w];
    }
    if (taken) {
      const int32_t place = done + before + __popc(ballot & ((1u << lane) - 1u));
      token[place] = t;
      expert[place] = e;
    }
    done += chunk;
    __syncthreads();  // warpTaken is rewritten by the next chunk
  }
}

}  // namespace

int64_t selectExpertChoice(int T, int E, int64_t C, const double* s, const uint8_t* allowed,
                           int32_t* counts, int32_t* token, int32_t* expert,
                           ExpertChoiceScratch& scratch, cudaStream_t stream) {
  const auto str = [](int64_t v) { return std::to_string(v); };
  const std::string where = "selectExpertChoice: ";
  if (E < 1) fail(ErrorKind::Shape, where + "E: expected a positive expert count, got " + str(E));
  if (T < 0) fail(ErrorKind::Shape, where + "T: expected a non-negative token count, got " + str(T));
  if (C < 0) fail(ErrorKind::Argument, where + "C: expected a non-negative capacity, got " + str(C));
  if (!counts) fail(ErrorKind::Argument, where + "counts: expected an [E] i32 device buffer, got null");
  if (T > 0 && C > 0) {
    if (!s) fail(ErrorKind::Argument, where + "s: expected a [T,E] f64 device buffer, got null");
    if (!token || !expert)
      fail(ErrorKind::Argument, where + (token ? "expert" : "token") +
                                    ": expected an [E·min(C,T)] i32 device buffer, got null");
  }
  if (T == 0 || C == 0) {
    checkCuda(cudaMemsetAsync(counts, 0, size_t(E) * sizeof(int32_t), stream),
              "cuda::selectExpertChoice: cudaMemsetAsync of counts");
    return 0;
  }
  capacity::RankKey* threshold = scratch.threshold.reserve(size_t(E), "expert choice: thresholds");
  checkCuda(launch<chooseTokensKernel>(dim3(unsigned(E)), dim3(kThreads), 0, stream, T, E, C, s,
                                       allowed, counts, threshold),
            "cuda::selectExpertChoice: launch of chooseTokensKernel");
  checkCuda(launch<writeAssignmentsKernel>(dim3(unsigned(E)), dim3(kThreads), 0, stream, T, E, s,
                                           allowed, counts, threshold, token, expert),
            "cuda::selectExpertChoice: launch of writeAssignmentsKernel");
  std::vector<int32_t> taken(static_cast<size_t>(E));
  checkCuda(copyAsync(taken.data(), counts, size_t(E) * sizeof(int32_t),
                            cudaMemcpyDeviceToHost, stream),
            "cuda::selectExpertChoice: cudaMemcpyAsync of counts to the host");
  checkCuda(streamSynchronize(stream), "cuda::selectExpertChoice: cudaStreamSynchronize");
  int64_t total = 0;
  for (int32_t c : taken) total += c;
  return total;
}

}  // namespace moekit::cuda
