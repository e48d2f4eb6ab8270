// The warpgroup MMA wrappers of native/cuda/wgmma.h on the SIMT emulator. A kernel of one warpgroup
// stages A [64,32] and B [64,32] (K-major, e4m3 codes of small integers) into shared memory at the
// documented no-swizzle layout for a given (LBO, SBO), builds each thread's accumulators from C by
// the documented accumulator positions, runs the wgmma protocol and scatters D back by the same
// positions; the host compares with A·Bᵀ + C computed in double, exact for these data, so the
// comparison is bit for bit. Descriptors with LBO and SBO swapped must fail it. Then the protocol
// checks: accumulators poisoned until the wait, chained ops, and the faults (missing wgmma.fence,
// missing fence.proxy.async, warps of a warpgroup disagreeing, unmodelled swizzle, pending ops at
// exit, incomplete warpgroup).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/minifloat.h"
#include "cuda/tensor_core.h"
#include "cuda/wgmma.h"
#include "exact_products.h"
#include "harness.h"

namespace {

using moekit::cuda::cpAsync16;
using moekit::cuda::cpAsyncCommit;
using moekit::cuda::cpAsyncWait;
using moekit::cuda::fenceProxyAsync;
using moekit::cuda::wgmmaCommit;
using moekit::cuda::wgmmaDescriptor;
using moekit::cuda::wgmmaE4m3m64n64k32;
using moekit::cuda::wgmmaFence;
using moekit::cuda::wgmmaWait;

constexpr int kM = 64, kN = 64, kK = 32;

// Byte (row, kb) of an operand in the no-swizzle K-major layout (wgmma.h).
__device__ int layoutOffset(int row, int kb, int lbo, int sbo) {
  return row / 8 * sbo + kb / 16 * lbo + row % 8 * 16 + kb % 16;
}

// Row and column of accumulator i of this thread (wgmma.h).
__device__ int accumulatorRow(int i) { return 16 * (int(threadIdx.x) / 32) + int(threadIdx.x) % 32 / 4 + 8 * (i % 4 / 2); }
__device__ int accumulatorCol(int i) { return 8 * (i / 4) + 2 * (int(threadIdx.x) % 4) + i % 2; }

struct Layout {
  int lbo, sbo;       // where the data is stored
  int descLbo, descSbo;  // what the descriptors say (equal unless testing a wrong descriptor)
};

// A, B [64, 32] e4m3 row-major in global memory; C, D [64, 64] f32. Operand B lives at byte
// `bOffset` of shared memory. `poisoned` gets, per thread, whether d[0] read as all-ones bits
// between the issue and the wait.
__global__ void wgmmaByLayout(const uint8_t* A, const uint8_t* B, const float* C, float* D, Layout layout, int bOffset,
                              int* poisoned) {
  uint8_t* smem = moekit::dynamicShared<uint8_t>();
  for (int e = int(threadIdx.x); e < kM * kK; e += 128) {
    const int row = e / kK, kb = e % kK;
    smem[layoutOffset(row, kb, layout.lbo, layout.sbo)] = A[e];
    smem[bOffset + layoutOffset(row, kb, layout.lbo, layout.sbo)] = B[e];
  }
  float d[32];
  for (int i = 0; i < 32; ++i) d[i] = C[accumulatorRow(i) * kN + accumulatorCol(i)];
  fenceProxyAsync();
  __syncthreads();
  wgmmaFence();
  wgmmaE4m3m64n64k32(d, wgmmaDescriptor(smem, unsigned(layout.descLbo), unsigned(layout.descSbo)),
                     wgmmaDescriptor(smem + bOffset, unsigned(layout.descLbo), unsigned(layout.descSbo)), true);
  wgmmaCommit();
  uint32_t bits;
  std::memcpy(&bits, &d[0], sizeof bits);
  poisoned[threadIdx.x] = bits == 0xffffffffu;
  wgmmaWait<0>(d);
  for (int i = 0; i < 32; ++i) D[accumulatorRow(i) * kN + accumulatorCol(i)] = d[i];
}

std::vector<uint8_t> toE4m3(const std::vector<float>& v) {
  std::vector<uint8_t> out;
  for (float x : v) out.push_back(moekit::encodeE4M3(x));
  return out;
}

// D [64,64] = A [64,32] · B [64,32]ᵀ + C in double.
std::vector<float> reference(const std::vector<float>& A, const std::vector<float>& B, const std::vector<float>& C) {
  std::vector<float> Bt(B.size());  // [k][n]
  for (int n = 0; n < kN; ++n)
    for (int k = 0; k < kK; ++k) Bt[size_t(k) * kN + size_t(n)] = B[size_t(n) * kK + size_t(k)];
  return emutest::referenceProduct(A, Bt, C, kM, kN, kK);
}

struct Run {
  std::vector<float> got, want;
  std::vector<int> poisoned;
};

// The smallest shared memory holding an operand of the layout, rounded to 128 bytes.
int operandBytes(const Layout& l) {
  const int last = 7 * l.sbo + 1 * l.lbo + 7 * 16 + 15;
  return (last + 1 + 127) / 128 * 128;
}

Run runLayout(const Layout& layout, uint32_t seed) {
  const std::vector<float> A = emutest::smallIntegers(size_t(kM) * kK, 6, seed), B = emutest::smallIntegers(size_t(kN) * kK, 6, seed + 1),
                           C = emutest::smallIntegers(size_t(kM) * kN, 200, seed + 2);
  emutest::DeviceArray<uint8_t> dA(toE4m3(A)), dB(toE4m3(B));
  emutest::DeviceArray<float> dC(C), dD(size_t(kM) * kN);
  emutest::DeviceArray<int> poisoned(128);
  const int bOffset = std::max(operandBytes(layout), operandBytes({layout.descLbo, layout.descSbo, 0, 0}));
  EMU_CUDA(moekit::launch<wgmmaByLayout>(1, 128, size_t(2 * bOffset), nullptr, dA.get(), dB.get(), dC.get(), dD.get(),
                                         layout, bOffset, poisoned.get()));
  return {dD.download(), reference(A, B, C), poisoned.download()};
}

EMU_CASE("wgmma: m64n64k32 e4m3 equals A·Bᵀ + C on the documented accumulator positions, core matrices packed (LBO 128, SBO 256)") {
  const Run r = runLayout({128, 256, 128, 256}, 1);
  EMU_EXPECT(emutest::countMismatches(r.got, r.want) == 0, "D = A·Bᵀ + C bit for bit");
}

EMU_CASE("wgmma: the descriptor's LBO and SBO place the core matrices (K-adjacent 1024 bytes apart, row groups 128)") {
  const Run r = runLayout({1024, 128, 1024, 128}, 2);
  EMU_EXPECT(emutest::countMismatches(r.got, r.want) == 0, "D = A·Bᵀ + C bit for bit with the core matrices transposed in memory");
  const Run padded = runLayout({128, 384, 128, 384}, 3);
  EMU_EXPECT(emutest::countMismatches(padded.got, padded.want) == 0, "D = A·Bᵀ + C with 128 bytes between row groups");
}

EMU_CASE("wgmma: descriptors with LBO and SBO swapped fail the A·Bᵀ + C comparison") {
  const Run r = runLayout({128, 256, 256, 128}, 4);
  const int bad = emutest::countMismatches(r.got, r.want);
  std::fprintf(stderr, "swapped LBO/SBO: %d of %d accumulators differ\n", bad, kM * kN);
  EMU_EXPECT(bad > kM * kN / 2, "the comparison catches a descriptor that misplaces the core matrices");
}

EMU_CASE("wgmma: the accumulators read as 0xFF bytes from the issue until the wait completes the group") {
  const Run r = runLayout({128, 256, 128, 256}, 5);
  for (int p : r.poisoned) EMU_EXPECT(p == 1, "d[0] is poison between issue and wait");
  EMU_EXPECT(emutest::countMismatches(r.got, r.want) == 0, "and the product after the wait");
}

// Two groups on one accumulator: op 0 (scale-d 0) in group 0, op 1 (scale-d 1, the second operand
// pair) in group 1. After wait<1> d is still poison (op 1 pending); after wait<0> it is
// A0·B0ᵀ + A1·B1ᵀ. Operands: A0, B0, A1, B1 at 2048-byte steps (LBO 128, SBO 256).
__global__ void chainedGroups(const uint8_t* operands, float* D, int* poisonedAfterFirst) {
  uint8_t* smem = moekit::dynamicShared<uint8_t>();
  for (int e = int(threadIdx.x); e < 4 * kM * kK; e += 128) {
    const int m = e / (kM * kK), row = e % (kM * kK) / kK, kb = e % kK;
    smem[m * 2048 + layoutOffset(row, kb, 128, 256)] = operands[e];
  }
  float d[32];
  for (float& x : d) x = 12345.0f;  // scale-d 0 ignores it
  fenceProxyAsync();
  __syncthreads();
  wgmmaFence();
  wgmmaE4m3m64n64k32(d, wgmmaDescriptor(smem, 128, 256), wgmmaDescriptor(smem + 2048, 128, 256), false);
  wgmmaCommit();
  wgmmaE4m3m64n64k32(d, wgmmaDescriptor(smem + 4096, 128, 256), wgmmaDescriptor(smem + 6144, 128, 256), true);
  wgmmaCommit();
  wgmmaWait<1>(d);
  uint32_t bits;
  std::memcpy(&bits, &d[31], sizeof bits);
  poisonedAfterFirst[threadIdx.x] = bits == 0xffffffffu;
  wgmmaWait<0>(d);
  for (int i = 0; i < 32; ++i) D[accumulatorRow(i) * kN + accumulatorCol(i)] = d[i];
}

EMU_CASE("wgmma: ops on one accumulator chain in issue order across groups; scale-d 0 ignores the old value") {
  const size_t n = size_t(kM) * kK;
  std::vector<float> all = emutest::smallIntegers(4 * n, 5, 9);
  emutest::DeviceArray<uint8_t> dOps(toE4m3(all));
  emutest::DeviceArray<float> dD(size_t(kM) * kN);
  emutest::DeviceArray<int> poisoned(128);
  EMU_CUDA(moekit::launch<chainedGroups>(1, 128, 8192, nullptr, dOps.get(), dD.get(), poisoned.get()));
  const auto part = [&](int m) { return std::vector<float>(all.begin() + long(m * n), all.begin() + long((m + 1) * n)); };
  const std::vector<float> first = reference(part(0), part(1), std::vector<float>(size_t(kM) * kN, 0.0f));
  const std::vector<float> want = reference(part(2), part(3), first);
  EMU_EXPECT(emutest::countMismatches(dD.download(), want) == 0, "D = A0·B0ᵀ + A1·B1ᵀ");
  for (int p : poisoned.download()) EMU_EXPECT(p == 1, "still poison while the second group is pending");
}

// ---- protocol faults ------------------------------------------------------------------------------
enum class Misuse { NoFence, NoProxyFence, WarpDisagrees, Swizzled, ExitPending };

__global__ void brokenProtocol(Misuse what, const uint8_t* src, float* out) {
  uint8_t* smem = moekit::dynamicShared<uint8_t>();
  for (int c = int(threadIdx.x); c < 4096 / 16; c += int(blockDim.x)) cpAsync16(smem + 16 * c, src + 16 * c);
  cpAsyncCommit();
  cpAsyncWait<0>();
  if (what != Misuse::NoProxyFence) fenceProxyAsync();
  __syncthreads();
  float d[32] = {};
  if (what != Misuse::NoFence) wgmmaFence();
  uint64_t descB = wgmmaDescriptor(smem + 2048, 128, 256);
  if (what == Misuse::WarpDisagrees && threadIdx.x >= 96) descB = wgmmaDescriptor(smem + 1024, 128, 256);
  if (what == Misuse::Swizzled) descB |= uint64_t(1) << 62;
  wgmmaE4m3m64n64k32(d, wgmmaDescriptor(smem, 128, 256), descB, false);
  wgmmaCommit();
  if (what == Misuse::ExitPending) return;
  wgmmaWait<0>(d);
  out[threadIdx.x] = d[0];
}

std::string faultOf(Misuse what, unsigned threads = 128) {
  emutest::DeviceArray<uint8_t> src(std::vector<uint8_t>(4096, 0x38));  // e4m3 1.0
  emutest::DeviceArray<float> out(128);
  return emutest::expectFault([&] { moekit::launch<brokenProtocol>(1, threads, 4096, nullptr, what, src.get(), out.get()); });
}

EMU_CASE("wgmma: an issue without wgmma.fence since the thread started is reported") {
  emutest::expectContains(faultOf(Misuse::NoFence), {"brokenProtocol", "wgmma.mma_async at", "wgmma_test.cu:", "no wgmma.fence"});
}

EMU_CASE("wgmma: shared memory filled by cp.async and read by wgmma without fence.proxy.async is reported") {
  emutest::expectContains(faultOf(Misuse::NoProxyFence), {"async proxy", "cp.async copies landed at", "no fence.proxy.async"});
}

EMU_CASE("wgmma: warps of one warpgroup issuing different descriptors are reported") {
  emutest::expectContains(faultOf(Misuse::WarpDisagrees), {"wgmma number 0 of warpgroup 0", "differs from thread"});
}

EMU_CASE("wgmma: a swizzled descriptor is refused as not modelled") {
  emutest::expectContains(faultOf(Misuse::Swizzled), {"descriptor b has swizzle mode 1", "models swizzle 0"});
}

EMU_CASE("wgmma: a thread exiting with ops pending is reported") {
  emutest::expectContains(faultOf(Misuse::ExitPending), {"exited with 1 wgmma op(s) pending", "wgmma.wait_group"});
}

EMU_CASE("wgmma: a block of 64 threads (half a warpgroup) is reported") {
  emutest::expectContains(faultOf(Misuse::NoFence, 64), {"warpgroup (threads 0-127) is incomplete", "block of 64"});
}

}  // namespace
