// Block-level behaviour of the SIMT emulator: __syncthreads and its counting forms, the seeded
// fiber order exposing a missing __syncthreads, static and dynamic shared memory, and atomics under
// contention from many blocks on several OS threads.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "harness.h"

namespace {

// ---- shared-memory tree reduction, with and without its barriers -----------------------------------
constexpr int kReduceThreads = 256;

template <bool Synchronised>
__global__ void blockSum(const int* in, int* out) {
  __shared__ int partial[kReduceThreads];
  const int t = int(threadIdx.x);
  partial[t] = in[blockIdx.x * kReduceThreads + t];
  if (Synchronised) __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride >>= 1) {
    if (t < stride) partial[t] += partial[t + stride];
    if (Synchronised) __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = partial[0];
}

// True when every block's sum came out right under `seed`.
template <bool Synchronised>
bool blockSumCorrect(uint64_t seed) {
  constexpr int blocks = 8;
  std::vector<int> in(size_t(blocks) * kReduceThreads);
  for (size_t i = 0; i < in.size(); ++i) in[i] = int((i * 2654435761u + seed) % 1000);
  emutest::DeviceArray<int> dIn(in);
  emutest::DeviceArray<int> out(blocks);
  moekit::emu::setSeed(seed);
  EMU_CUDA((moekit::launch<blockSum<Synchronised>>(blocks, kReduceThreads, 0, nullptr, dIn.get(), out.get())));
  const std::vector<int> got = out.download();
  for (int b = 0; b < blocks; ++b) {
    const int expected = std::accumulate(in.begin() + b * kReduceThreads, in.begin() + (b + 1) * kReduceThreads, 0);
    if (got[size_t(b)] != expected) return false;
  }
  return true;
}

constexpr uint64_t kSeeds = 8;

EMU_CASE("block: a shared-memory reduction with its __syncthreads is exact under every seed") {
  for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
    EMU_EXPECT(blockSumCorrect<true>(seed), "seed " + std::to_string(seed));
  }
}

EMU_CASE("block: the shuffled fiber order exposes a reduction missing its __syncthreads") {
  int caught = 0;
  for (uint64_t seed = 1; seed <= kSeeds; ++seed) caught += !blockSumCorrect<false>(seed);
  std::fprintf(stderr, "wrong sums under %d of %d seeds\n", caught, int(kSeeds));
  EMU_EXPECT(caught > 0, "the unsynchronised reduction gave the right sum under all " + std::to_string(kSeeds) + " seeds");
}

// ---- barrier forms and exited threads ---------------------------------------------------------------
__global__ void barrierForms(int* out) {
  const int t = int(threadIdx.x);
  out[0 * 128 + t] = __syncthreads_count(t % 3 == 0);
  out[1 * 128 + t] = __syncthreads_and(t < 1000);
  out[2 * 128 + t] = __syncthreads_and(t != 77);
  out[3 * 128 + t] = __syncthreads_or(t == 77);
  out[4 * 128 + t] = __syncthreads_or(0);
}

EMU_CASE("block: __syncthreads_count/and/or combine the predicates of the whole block") {
  emutest::DeviceArray<int> out(5 * 128);
  EMU_CUDA(moekit::launch<barrierForms>(1, 128, 0, nullptr, out.get()));
  const auto got = out.download();
  const bool nonzero[5] = {true, true, false, true, false};
  for (int form = 0; form < 5; ++form) {
    for (int t = 0; t < 128; ++t) {
      const int v = got[size_t(form * 128 + t)];
      EMU_EXPECT((v != 0) == nonzero[form], "form " + std::to_string(form) + " thread " + std::to_string(t));
    }
  }
  for (int t = 0; t < 128; ++t) EMU_EXPECT(got[size_t(t)] == 43, "__syncthreads_count counts t % 3 == 0");
}

// Half the block returns early; the rest still pass two barriers (exited threads count as arrived).
__global__ void earlyExit(int* out) {
  __shared__ int value;
  if (threadIdx.x >= 64) return;
  if (threadIdx.x == 0) value = 42;
  __syncthreads();
  out[threadIdx.x] = value;
  __syncthreads();
}

EMU_CASE("block: threads that exited count as arrived at __syncthreads") {
  emutest::DeviceArray<int> out(64);
  EMU_CUDA(moekit::launch<earlyExit>(1, 128, 0, nullptr, out.get()));
  for (int v : out.download()) EMU_EXPECT(v == 42, "every remaining thread sees the value after the barrier");
}

// threadIdx/blockIdx/blockDim/gridDim in three dimensions.
__global__ void coordinates(uint32_t* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned id = block * (blockDim.x * blockDim.y * blockDim.z) + thread;
  out[id] = (threadIdx.x | threadIdx.y << 4 | threadIdx.z << 8) | (blockIdx.x | blockIdx.y << 4 | blockIdx.z << 8) << 16;
}

EMU_CASE("block: threadIdx, blockIdx, blockDim and gridDim cover a 3-D launch exactly once") {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const size_t n = 3 * 2 * 2 * 4 * 3 * 2;
  emutest::DeviceArray<uint32_t> out(n);
  EMU_CUDA(moekit::launch<coordinates>(grid, block, 0, nullptr, out.get()));
  const auto got = out.download();
  size_t i = 0;
  for (unsigned bz = 0; bz < 2; ++bz)
    for (unsigned by = 0; by < 2; ++by)
      for (unsigned bx = 0; bx < 3; ++bx)
        for (unsigned tz = 0; tz < 2; ++tz)
          for (unsigned ty = 0; ty < 3; ++ty)
            for (unsigned tx = 0; tx < 4; ++tx) {
              const uint32_t expected = (tx | ty << 4 | tz << 8) | (bx | by << 4 | bz << 8) << 16;
              EMU_EXPECT(got[i++] == expected, "element " + std::to_string(i - 1));
            }
}

// ---- dynamic shared memory ------------------------------------------------------------------------
__global__ void reverseInShared(const float* in, float* out, int n, int* flags) {
  float* buffer = moekit::dynamicShared<float>();
  const int t = int(threadIdx.x);
  if (t == 0) {
    flags[blockIdx.x * 2] = int(reinterpret_cast<uintptr_t>(buffer) % 16);
    uint32_t bits;
    std::memcpy(&bits, &buffer[n - 1], 4);
    flags[blockIdx.x * 2 + 1] = bits == 0xffffffffu;  // unwritten shared memory reads as NaN
  }
  __syncthreads();
  for (int i = t; i < n; i += int(blockDim.x)) buffer[i] = in[blockIdx.x * unsigned(n) + unsigned(i)];
  __syncthreads();
  for (int i = t; i < n; i += int(blockDim.x)) out[blockIdx.x * unsigned(n) + unsigned(i)] = buffer[n - 1 - i];
}

EMU_CASE("block: dynamic shared memory is per block, 16-byte aligned, poisoned and sized by the launch") {
  constexpr int n = 3000, blocks = 6;
  std::vector<float> in(size_t(n) * blocks);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i) * 0.5f;
  emutest::DeviceArray<float> dIn(in);
  emutest::DeviceArray<float> out(in.size());
  emutest::DeviceArray<int> flags(2 * blocks);
  EMU_CUDA(moekit::launch<reverseInShared>(blocks, 128, n * sizeof(float), nullptr, dIn.get(), out.get(), n, flags.get()));
  const auto got = out.download();
  for (int b = 0; b < blocks; ++b) {
    for (int i = 0; i < n; ++i) {
      EMU_EXPECT(got[size_t(b * n + i)] == in[size_t(b * n + n - 1 - i)], "block " + std::to_string(b) + " reversed its slice");
    }
  }
  const auto f = flags.download();
  for (int b = 0; b < blocks; ++b) {
    EMU_EXPECT(f[size_t(2 * b)] == 0, "the buffer is 16-byte aligned");
    EMU_EXPECT(f[size_t(2 * b + 1)] == 1, "each block starts with poisoned shared memory");
  }
}

__global__ void bigShared(int* out) {
  int* buffer = moekit::dynamicShared<int>();
  buffer[threadIdx.x * 500] = int(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = buffer[(31 - threadIdx.x) * 500];
}

EMU_CASE("block: more than 48 KiB of dynamic shared memory needs cudaFuncSetAttribute, as on hardware") {
  emutest::DeviceArray<int> out(32);
  const size_t bytes = 64 * 1024;
  EMU_EXPECT(moekit::launch<bigShared>(1, 32, bytes, nullptr, out.get()) == cudaErrorInvalidValue,
             "the launch is refused without the attribute");
  EMU_EXPECT(cudaGetLastError() == cudaErrorInvalidValue, "and the error is the thread's last error");
  EMU_EXPECT(cudaGetLastError() == cudaSuccess, "which cudaGetLastError clears");
  EMU_CUDA(cudaFuncSetAttribute(bigShared, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  EMU_CUDA(moekit::launch<bigShared>(1, 32, bytes, nullptr, out.get()));
  const auto got = out.download();
  for (int t = 0; t < 32; ++t) EMU_EXPECT(got[size_t(t)] == 31 - t, "thread " + std::to_string(t));
}

// ---- atomics under contention --------------------------------------------------------------------
struct Totals {
  int count;
  unsigned ucount;
  unsigned long long big;
  float fsum;
  double dsum;
  int maximum;
  int minimum;
  unsigned umax;
  int lock;
  int guarded;
  unsigned wrap;
  unsigned bits;
};

__global__ void contend(Totals* totals, int* exchanged, int* slot) {
  const int id = int(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(&totals->count, 1);
  atomicAdd(&totals->ucount, 2u);
  atomicAdd(&totals->big, 1ull << 33);
  atomicAdd(&totals->fsum, 1.0f);
  atomicAdd(&totals->dsum, 0.5);
  atomicMax(&totals->maximum, id);
  atomicMin(&totals->minimum, -id);
  atomicMax(&totals->umax, unsigned(id) * 3u);
  atomicInc(&totals->wrap, 999u);
  atomicOr(&totals->bits, 1u << (id % 32));
  // A spin lock taken with atomicCAS and released with atomicExch.
  while (atomicCAS(&totals->lock, 0, 1) != 0) __nanosleep(10);
  __threadfence();
  totals->guarded += 1;
  __threadfence();
  atomicExch(&totals->lock, 0);
  exchanged[id] = atomicExch(slot, id);
}

EMU_CASE("atomics: many blocks on several OS threads give exact totals") {
  constexpr int blocks = 96, threads = 128, n = blocks * threads;
  Totals start{};
  start.minimum = 1;
  emutest::DeviceArray<Totals> totals(std::vector<Totals>{start});
  emutest::DeviceArray<int> exchanged(n);
  emutest::DeviceArray<int> slot(std::vector<int>{-1});
  EMU_CUDA(moekit::launch<contend>(blocks, threads, 0, nullptr, totals.get(), exchanged.get(), slot.get()));
  const Totals t = totals.download()[0];
  EMU_EXPECT(t.count == n, "atomicAdd(int)");
  EMU_EXPECT(t.ucount == 2u * n, "atomicAdd(unsigned)");
  EMU_EXPECT(t.big == (unsigned long long)n << 33, "atomicAdd(unsigned long long)");
  EMU_EXPECT(t.fsum == float(n), "atomicAdd(float), exact below 2^24");
  EMU_EXPECT(t.dsum == 0.5 * n, "atomicAdd(double)");
  EMU_EXPECT(t.maximum == n - 1, "atomicMax(int)");
  EMU_EXPECT(t.minimum == -(n - 1), "atomicMin(int)");
  EMU_EXPECT(t.umax == 3u * (n - 1), "atomicMax(unsigned)");
  EMU_EXPECT(t.wrap == unsigned(n % 1000), "atomicInc wraps at its limit");
  EMU_EXPECT(t.bits == 0xffffffffu, "atomicOr");
  EMU_EXPECT(t.guarded == n, "the atomicCAS spin lock serialised every increment");
  // atomicExch hands each id on exactly once: the old values plus the final one are -1 and 0..n-1.
  std::vector<int> seen = exchanged.download();
  seen.push_back(slot.download()[0]);
  std::sort(seen.begin(), seen.end());
  for (int i = 0; i <= n; ++i) EMU_EXPECT(seen[size_t(i)] == i - 1, "atomicExch chain element " + std::to_string(i));
}

// ---- speed ----------------------------------------------------------------------------------------
__global__ void manyBarriers(int rounds, int* out) {
  __shared__ int counter;
  if (threadIdx.x == 0) counter = 0;
  __syncthreads();
  for (int r = 0; r < rounds; ++r) {
    if (threadIdx.x == unsigned(r) % blockDim.x) ++counter;
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = counter;
}

EMU_CASE("block: a fiber switch costs well under a microsecond") {
  constexpr int blocks = 4, threads = 1024, rounds = 100;
  emutest::DeviceArray<int> out(blocks);
  const auto start = std::chrono::steady_clock::now();
  EMU_CUDA(moekit::launch<manyBarriers>(blocks, threads, 0, nullptr, rounds, out.get()));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int v : out.download()) EMU_EXPECT(v == rounds, "each round's increment is visible after its barrier");
  const double switches = double(blocks) * threads * (rounds + 2);
  std::fprintf(stderr, "%.0f fiber switches in %.3f s: %.1f ns each\n", switches, seconds, 1e9 * seconds / switches);
  EMU_EXPECT(seconds / switches < 1e-6, "switches took " + std::to_string(1e9 * seconds / switches) + " ns each");
}

}  // namespace
