// Kernel bugs the SIMT emulator must report (as a KernelFault naming the kernel) instead of hanging
// or passing by luck: divergent warp collectives, masks naming exited or missing lanes, deadlock and
// divergence at __syncthreads; and host code dereferencing device memory, which must abort.

#include <cstdio>
#include <string>
#include <vector>

#include "harness.h"

namespace {

// Lanes 0-15 and 16-31 reach two different __shfl_sync calls, each naming the whole warp.
__global__ void divergentShfl(int* out) {
  int v = int(threadIdx.x);
  if (threadIdx.x < 16) {
    v = __shfl_sync(0xffffffff, v, 0);
  } else {
    v = __shfl_sync(0xffffffff, v, 1);
  }
  out[threadIdx.x] = v;
}

EMU_CASE("detect: a divergent __shfl_sync is reported with both call sites, not hung") {
  emutest::DeviceArray<int> out(32);
  const std::string fault = emutest::expectFault([&] { moekit::launch<divergentShfl>(1, 32, 0, nullptr, out.get()); });
  emutest::expectContains(fault, {"kernel {anonymous}::divergentShfl", "divergent __shfl_sync", "lanes 0-15",
                                  "lanes 16-31", "detect_test.cu:17", "detect_test.cu:19"});
}

// A ballot under a full mask, reached by half the warp at one call and half at another.
__global__ void divergentBallot(unsigned* out) {
  if (threadIdx.x % 2) {
    out[threadIdx.x] = __ballot_sync(0xffffffff, 1);
  } else {
    out[threadIdx.x] = __ballot_sync(0xffffffff, 0);
  }
}

EMU_CASE("detect: a divergent __ballot_sync is reported") {
  emutest::DeviceArray<unsigned> out(32);
  const std::string fault = emutest::expectFault([&] { moekit::launch<divergentBallot>(1, 32, 0, nullptr, out.get()); });
  emutest::expectContains(fault, {"divergentBallot", "divergent __ballot_sync"});
}

// Lane 5 returns; the rest shuffle under a mask that still names it.
__global__ void exitedLane(int* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_sync(0xffffffff, int(threadIdx.x), 0);
}

EMU_CASE("detect: a mask naming an exited lane is reported whichever order the lanes run in") {
  emutest::DeviceArray<int> out(32);
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    moekit::emu::setSeed(seed);
    const std::string fault = emutest::expectFault([&] { moekit::launch<exitedLane>(1, 32, 0, nullptr, out.get()); });
    emutest::expectContains(fault, {"exitedLane", "__shfl_sync", "exited"});
    emutest::expectContains(fault, {"lane 5"});
  }
}

// Lane 5 returns; the barrier (which it passes by exiting) guarantees it is gone before the shuffle.
__global__ void exitedBeforeShfl(int* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  out[threadIdx.x] = __shfl_sync(0xffffffff, int(threadIdx.x), 0);
}

EMU_CASE("detect: a collective whose mask names a lane that already exited is reported") {
  emutest::DeviceArray<int> out(32);
  const std::string fault = emutest::expectFault([&] { moekit::launch<exitedBeforeShfl>(1, 32, 0, nullptr, out.get()); });
  emutest::expectContains(fault, {"exitedBeforeShfl", "the mask names lane 5 (thread 5), which has exited"});
}

// A block of 48 threads: warp 1 has 16 lanes, but the reduction assumes 32.
__global__ void partialWarp(int* out) {
  int v = 1;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffff, v, unsigned(offset));
  out[threadIdx.x] = v;
}

EMU_CASE("detect: a full mask in a partial warp names lanes that do not exist") {
  emutest::DeviceArray<int> out(48);
  const std::string fault = emutest::expectFault([&] { moekit::launch<partialWarp>(1, 48, 0, nullptr, out.get()); });
  emutest::expectContains(fault, {"partialWarp", "does not exist", "48 threads"});
}

// Lane 0 waits at __syncthreads while lanes 1-31 wait for it in __shfl_sync.
__global__ void barrierDeadlock(int* out) {
  int v = int(threadIdx.x);
  if (threadIdx.x == 0) __syncthreads();
  v = __shfl_sync(0xffffffff, v, 0);
  out[threadIdx.x] = v;
}

EMU_CASE("detect: a __syncthreads deadlock is reported, not hung") {
  emutest::DeviceArray<int> out(64);
  const std::string fault = emutest::expectFault([&] { moekit::launch<barrierDeadlock>(1, 64, 0, nullptr, out.get()); });
  emutest::expectContains(fault, {"barrierDeadlock", "deadlock at __syncthreads", "lanes 1-31 wait in __shfl_sync", "lane 0 waits at __syncthreads"});
}

// Two warps reach different __syncthreads calls.
__global__ void divergentBarrier(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

EMU_CASE("detect: __syncthreads reached at two different calls in one phase is reported") {
  emutest::DeviceArray<int> out(64);
  const std::string fault = emutest::expectFault([&] { moekit::launch<divergentBarrier>(1, 64, 0, nullptr, out.get()); });
  emutest::expectContains(fault, {"divergentBarrier", "divergent __syncthreads"});
}

// The fault ends the launch: later launches run normally.
__global__ void fill(int* out) { out[blockIdx.x * blockDim.x + threadIdx.x] = 7; }

EMU_CASE("detect: a fault in one block stops the launch and leaves the emulator usable") {
  emutest::DeviceArray<int> out(64);
  emutest::expectFault([&] { moekit::launch<divergentShfl>(4, 32, 0, nullptr, out.get()); });
  EMU_CUDA(moekit::launch<fill>(2, 32, 0, nullptr, out.get()));
  for (int v : out.download()) EMU_EXPECT(v == 7, "the next launch ran completely");
}

// ---- host dereference of device memory -------------------------------------------------------------
EMU_CASE("detect: host code dereferencing device memory aborts with a message") {
  int* device = nullptr;
  EMU_CUDA(cudaMalloc(&device, 64 * sizeof(int)));
  EMU_CUDA(cudaMemset(device, 0, 64 * sizeof(int)));
  const auto [signal, message] = emutest::inChild([&] {
    volatile int* p = device;
    const int value = p[3];  // a host read of device memory: must not succeed
    std::fprintf(stderr, "read %d\n", value);
  });
  EMU_EXPECT(signal == SIGABRT, "the child was ended by abort(), got signal " + std::to_string(signal));
  emutest::expectContains(message, {"host code dereferenced device memory"});
  // The same memory through the runtime works.
  int host[64] = {1};
  EMU_CUDA(cudaMemcpy(host, device, sizeof host, cudaMemcpyDeviceToHost));
  EMU_EXPECT(host[0] == 0 && host[63] == 0, "cudaMemcpy reads device memory");
  EMU_CUDA(cudaFree(device));
}

}  // namespace
