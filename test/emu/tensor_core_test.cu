// The tensor-core and cp.async wrappers of native/cuda/tensor_core.h on the SIMT emulator. Each
// wrapper is checked against a scalar transcription of its documented lane layout: a kernel builds
// the fragments element by element from [rows, cols] matrices in global memory, calls the wrapper
// and scatters the result back by the same layout, and the host compares with A·B + C computed in
// double. The data are small integers, so every sum is exact in fp32 and the comparison is bit for
// bit whatever the accumulation order. A deliberately wrong fragment layout (a[1] and a[2]
// swapped, compiled only here) must make that comparison fail. cp.async: a read before the wait
// must see the 0xFF poison, groups land in commit order, and the zero-filling form reads nothing.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "core/minifloat.h"
#include "cuda/tensor_core.h"
#include "exact_products.h"
#include "harness.h"

namespace {

using moekit::cuda::cpAsync16;
using moekit::cuda::cpAsync16OrZero;
using moekit::cuda::cpAsyncCommit;
using moekit::cuda::cpAsyncWait;
using moekit::cuda::ldmatrixX4;
using moekit::cuda::ldmatrixX4Trans;
using moekit::cuda::mmaBf16m16n8k16;
using moekit::cuda::mmaE4m3m16n8k32;

__device__ uint32_t pack16(uint16_t low, uint16_t high) { return uint32_t(low) | uint32_t(high) << 16; }
__device__ uint32_t pack8(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// ---- mma.sync m16n8k16 bf16, fragments built by the documented layout ---------------------------
// A [16,16] row-major, B [16,8] row-major (k, n), C and D [16,8] row-major. wrongLayout swaps
// a[1] and a[2] (rows g+8 and columns 2t+8 confused), a bug the reference must catch.
__global__ void mmaBf16ByLayout(const uint16_t* A, const uint16_t* B, const float* C, float* D, bool wrongLayout) {
  const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
  const auto a = [&](int r, int k) { return pack16(A[r * 16 + k], A[r * 16 + k + 1]); };
  const auto b = [&](int k) { return pack16(B[k * 8 + g], B[(k + 1) * 8 + g]); };
  uint32_t af[4] = {a(g, 2 * t), a(g + 8, 2 * t), a(g, 2 * t + 8), a(g + 8, 2 * t + 8)};
  if (wrongLayout) std::swap(af[1], af[2]);
  const uint32_t bf[2] = {b(2 * t), b(2 * t + 8)};
  float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  mmaBf16m16n8k16(c, af, bf);
  D[g * 8 + 2 * t] = c[0];
  D[g * 8 + 2 * t + 1] = c[1];
  D[(g + 8) * 8 + 2 * t] = c[2];
  D[(g + 8) * 8 + 2 * t + 1] = c[3];
}

// A [16,32] row-major, B [32,8] row-major (k, n), e4m3 codes; C, D [16,8].
__global__ void mmaE4m3ByLayout(const uint8_t* A, const uint8_t* B, const float* C, float* D) {
  const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
  const auto b = [&](int k) {
    const uint8_t col[4] = {B[k * 8 + g], B[(k + 1) * 8 + g], B[(k + 2) * 8 + g], B[(k + 3) * 8 + g]};
    return pack8(col);
  };
  const uint32_t af[4] = {pack8(A + g * 32 + 4 * t), pack8(A + (g + 8) * 32 + 4 * t), pack8(A + g * 32 + 4 * t + 16),
                          pack8(A + (g + 8) * 32 + 4 * t + 16)};
  const uint32_t bf[2] = {b(4 * t), b(4 * t + 16)};
  float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  mmaE4m3m16n8k32(c, af, bf);
  D[g * 8 + 2 * t] = c[0];
  D[g * 8 + 2 * t + 1] = c[1];
  D[(g + 8) * 8 + 2 * t] = c[2];
  D[(g + 8) * 8 + 2 * t + 1] = c[3];
}

using emutest::countMismatches;
using emutest::referenceProduct;
using emutest::smallIntegers;

std::vector<uint16_t> toBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float x : v) out.push_back(moekit::encodeBF16(x));
  return out;
}

// Runs mmaBf16ByLayout on the data of one seed; returns (device D, reference D).
std::pair<std::vector<float>, std::vector<float>> runMmaBf16(bool wrongLayout) {
  const std::vector<float> A = smallIntegers(16 * 16, 8, 1), B = smallIntegers(16 * 8, 8, 2), C = smallIntegers(16 * 8, 100, 3);
  emutest::DeviceArray<uint16_t> dA(toBf16(A)), dB(toBf16(B));
  emutest::DeviceArray<float> dC(C), dD(16 * 8);
  EMU_CUDA(moekit::launch<mmaBf16ByLayout>(1, 32, 0, nullptr, dA.get(), dB.get(), dC.get(), dD.get(), wrongLayout));
  return {dD.download(), referenceProduct(A, B, C, 16, 8, 16)};
}

EMU_CASE("tensor cores: mma m16n8k16 bf16 equals A·B + C on the documented fragment layout") {
  const auto [got, expected] = runMmaBf16(false);
  EMU_EXPECT(countMismatches(got, expected) == 0, "every element of D equals A·B + C bit for bit");
}

EMU_CASE("tensor cores: a fragment layout with a[1] and a[2] swapped fails the A·B + C comparison") {
  const auto [got, expected] = runMmaBf16(true);
  const int bad = countMismatches(got, expected);
  EMU_EXPECT(bad > 64, "the wrong layout changes most of D, got " + std::to_string(bad) + " of 128 elements wrong");
}

EMU_CASE("tensor cores: mma m16n8k32 e4m3 equals A·B + C on the documented fragment layout") {
  const std::vector<float> A = smallIntegers(16 * 32, 8, 4), B = smallIntegers(32 * 8, 8, 5), C = smallIntegers(16 * 8, 100, 6);
  std::vector<uint8_t> qa, qb;
  for (float x : A) qa.push_back(moekit::encodeE4M3(x));
  for (float x : B) qb.push_back(moekit::encodeE4M3(x));
  emutest::DeviceArray<uint8_t> dA(qa), dB(qb);
  emutest::DeviceArray<float> dC(C), dD(16 * 8);
  EMU_CUDA(moekit::launch<mmaE4m3ByLayout>(1, 32, 0, nullptr, dA.get(), dB.get(), dC.get(), dD.get()));
  EMU_EXPECT(countMismatches(dD.download(), referenceProduct(A, B, C, 16, 8, 32)) == 0,
             "every element of D equals A·B + C bit for bit");
}

EMU_CASE("tensor cores: the fp8 mma faults on an emulated sm_80 and requireFp8Mma throws Error(Device)") {
  setenv("MOEKIT_EMU_SM", "80", 1);  // read once per process, and each case runs in its own
  try {
    moekit::cuda::requireFp8Mma(0, "fp8 test");
    throw emutest::Failure("requireFp8Mma accepted an sm_80 device");
  } catch (const moekit::Error& e) {
    EMU_EXPECT(e.kind() == moekit::ErrorKind::Device, "the error is a device error");
    emutest::expectContains(e.what(), {"fp8 test: device 0", "8.9 or newer", "got 8.0"});
  }
  emutest::DeviceArray<uint8_t> dA(16 * 32), dB(32 * 8);
  emutest::DeviceArray<float> dC(std::vector<float>(16 * 8, 0.0f)), dD(16 * 8);
  const std::string fault = emutest::expectFault([&] {
    moekit::launch<mmaE4m3ByLayout>(1, 32, 0, nullptr, dA.get(), dB.get(), dC.get(), dD.get());
  });
  emutest::expectContains(fault, {"mmaE4m3ByLayout", "emulated sm_80", "sm_89 or newer"});
}

// ---- ldmatrix ---------------------------------------------------------------------------------------
// Matrix i, row r lives at shared row slot[i·8 + r] (a permutation, stride 24 halves = 48 bytes,
// 16-byte aligned): lanes pass scattered row addresses. M_i(r, c) = 1000·i + 16·r + c.
constexpr int kSlotStride = 24;
__device__ int slotOf(int matrixRow) { return (matrixRow * 13 + 5) % 32; }

__global__ void ldmatrixKernel(bool trans, uint32_t* out) {
  uint16_t* smem = moekit::dynamicShared<uint16_t>();
  const int lane = int(threadIdx.x);
  for (int c = 0; c < 8; ++c) {
    const int i = lane / 8, r = lane % 8;
    smem[slotOf(lane) * kSlotStride + c] = uint16_t(1000 * i + 16 * r + c);
  }
  __syncthreads();
  uint32_t r[4];
  const uint16_t* row = smem + slotOf(lane) * kSlotStride;
  if (trans) ldmatrixX4Trans(r, row);
  else ldmatrixX4(r, row);
  for (int i = 0; i < 4; ++i) out[lane * 4 + i] = r[i];
}

void checkLdmatrix(bool trans) {
  emutest::DeviceArray<uint32_t> out(32 * 4);
  EMU_CUDA(moekit::launch<ldmatrixKernel>(1, 32, 32 * kSlotStride * sizeof(uint16_t), nullptr, trans, out.get()));
  const std::vector<uint32_t> got = out.download();
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const int r0 = trans ? 2 * (lane % 4) : lane / 4, c0 = trans ? lane / 4 : 2 * (lane % 4);
      const int r1 = trans ? r0 + 1 : r0, c1 = trans ? c0 : c0 + 1;
      const uint32_t expected = uint32_t(1000 * i + 16 * r0 + c0) | uint32_t(1000 * i + 16 * r1 + c1) << 16;
      EMU_EXPECT(got[size_t(lane) * 4 + i] == expected,
                 "lane " + std::to_string(lane) + " register " + std::to_string(i));
    }
}

EMU_CASE("tensor cores: ldmatrix x4 gives lane L the pair M_i(L/4, 2(L%4)..+1) from per-lane row addresses") {
  checkLdmatrix(false);
}

EMU_CASE("tensor cores: ldmatrix x4 .trans gives lane L the pair M_i(2(L%4)..+1, L/4)") { checkLdmatrix(true); }

// ---- ldmatrix feeding mma: the addressing of the grouped GEMMs ------------------------------------
// D [16,16] = A [16,16] · Bᵀ with B given two ways: W [n][k] row-major (the NT operand, plain
// ldmatrix) and Bkn [k][n] row-major (ldmatrix .trans). Shared rows padded to 24 halves.
__global__ void ldmatrixMmaKernel(const uint16_t* A, const uint16_t* W, float* dNT, float* dNN) {
  uint16_t* sA = moekit::dynamicShared<uint16_t>();
  uint16_t* sW = sA + 16 * kSlotStride;
  uint16_t* sBkn = sW + 16 * kSlotStride;
  const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
  for (int e = lane; e < 256; e += 32) {
    sA[(e / 16) * kSlotStride + e % 16] = A[e];
    sW[(e / 16) * kSlotStride + e % 16] = W[e];
    sBkn[(e % 16) * kSlotStride + e / 16] = W[e];  // Bkn(k, n) = W(n, k)
  }
  __syncthreads();
  uint32_t a[4], w[4], bkn[4];
  ldmatrixX4(a, sA + (lane % 16) * kSlotStride + 8 * (lane / 16));
  ldmatrixX4(w, sW + ((lane % 8) + 8 * (lane / 16)) * kSlotStride + 8 * ((lane / 8) % 2));
  ldmatrixX4Trans(bkn, sBkn + ((lane % 8) + 8 * ((lane / 8) % 2)) * kSlotStride + 8 * (lane / 16));
  for (int nt = 0; nt < 2; ++nt) {
    float c[4] = {0, 0, 0, 0}, d[4] = {0, 0, 0, 0};
    const uint32_t bNT[2] = {w[2 * nt], w[2 * nt + 1]}, bNN[2] = {bkn[2 * nt], bkn[2 * nt + 1]};
    mmaBf16m16n8k16(c, a, bNT);
    mmaBf16m16n8k16(d, a, bNN);
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2), col = nt * 8 + 2 * t + i % 2;
      dNT[row * 16 + col] = c[i];
      dNN[row * 16 + col] = d[i];
    }
  }
}

EMU_CASE("tensor cores: ldmatrix fragments of row-major A and of B as [n][k] or .trans [k][n] feed mma") {
  const std::vector<float> A = smallIntegers(256, 8, 7), W = smallIntegers(256, 8, 8);
  std::vector<float> Bkn(256);
  for (int n = 0; n < 16; ++n)
    for (int k = 0; k < 16; ++k) Bkn[size_t(k) * 16 + n] = W[size_t(n) * 16 + k];
  const std::vector<float> expected = referenceProduct(A, Bkn, std::vector<float>(256, 0.0f), 16, 16, 16);
  emutest::DeviceArray<uint16_t> dA(toBf16(A)), dW(toBf16(W));
  emutest::DeviceArray<float> dNT(256), dNN(256);
  EMU_CUDA(moekit::launch<ldmatrixMmaKernel>(1, 32, 3 * 16 * kSlotStride * sizeof(uint16_t), nullptr, dA.get(),
                                             dW.get(), dNT.get(), dNN.get()));
  EMU_EXPECT(countMismatches(dNT.download(), expected) == 0, "A·Wᵀ through plain ldmatrix of W [n][k]");
  EMU_EXPECT(countMismatches(dNN.download(), expected) == 0, "A·B through ldmatrix .trans of B [k][n]");
}

// ---- warp-collective checks reach the wrappers ------------------------------------------------------
__global__ void divergentMma(float* out) {
  const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float c[4] = {0, 0, 0, 0};
  if (threadIdx.x < 16) mmaBf16m16n8k16(c, a, b);
  else mmaBf16m16n8k16(c, a, b);
  out[threadIdx.x] = c[0];
}

EMU_CASE("tensor cores: an mma reached at two call sites by one warp is reported as divergent") {
  emutest::DeviceArray<float> out(32);
  const std::string fault = emutest::expectFault([&] { moekit::launch<divergentMma>(1, 32, 0, nullptr, out.get()); });
  emutest::expectContains(fault, {"divergentMma", "divergent __shfl_sync", "tensor_core_test.cu:"});
}

EMU_CASE("tensor cores: an mma in a block of 16 threads (a partial warp) is reported") {
  emutest::DeviceArray<float> out(32);
  const std::string fault = emutest::expectFault([&] { moekit::launch<divergentMma>(1, 16, 0, nullptr, out.get()); });
  emutest::expectContains(fault, {"divergentMma", "does not exist"});
}

// ---- cp.async -------------------------------------------------------------------------------------
// Thread i copies floats [4i, 4i+4) of src into shared memory and records what it reads there
// (its own chunk) before and after cpAsyncWait<0>.
__global__ void copyThenRead(const float* src, float* before, float* after) {
  float* smem = moekit::dynamicShared<float>();
  const int i = int(threadIdx.x);
  cpAsync16(smem + 4 * i, src + 4 * i);
  cpAsyncCommit();
  for (int j = 0; j < 4; ++j) before[4 * i + j] = smem[4 * i + j];
  cpAsyncWait<0>();
  for (int j = 0; j < 4; ++j) after[4 * i + j] = smem[4 * i + j];
}

bool isPoison(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits == 0xffffffffu;
}

EMU_CASE("cp.async: the destination reads as 0xFF bytes before cpAsyncWait and as the source after") {
  std::vector<float> src(128);
  for (size_t i = 0; i < src.size(); ++i) src[i] = float(i) + 0.5f;
  emutest::DeviceArray<float> dSrc(src), before(128), after(128);
  EMU_CUDA(moekit::launch<copyThenRead>(1, 32, 128 * sizeof(float), nullptr, dSrc.get(), before.get(), after.get()));
  for (float v : before.download()) EMU_EXPECT(isPoison(v), "a read before the wait sees the poison");
  EMU_EXPECT(after.download() == src, "after the wait the copy has landed");
}

// slot 0: group 0, slot 1: group 1, slot 2: issued but never committed until the end. out holds
// the three slots after wait<1>, after wait<0>, and after a last commit + wait<0> (4 floats each).
__global__ void groupOrder(const float* src, float* out) {
  float* smem = moekit::dynamicShared<float>();
  cpAsync16(smem, src);
  cpAsyncCommit();
  cpAsync16(smem + 4, src + 4);
  cpAsyncCommit();
  cpAsync16(smem + 8, src + 8);
  cpAsyncWait<1>();
  for (int j = 0; j < 12; ++j) out[j] = smem[j];
  cpAsyncWait<0>();
  for (int j = 0; j < 12; ++j) out[12 + j] = smem[j];
  cpAsyncCommit();
  cpAsyncWait<0>();
  for (int j = 0; j < 12; ++j) out[24 + j] = smem[j];
}

EMU_CASE("cp.async: cpAsyncWait<N> lands every committed group but the N most recent; open copies wait for a commit") {
  std::vector<float> src(12);
  for (int i = 0; i < 12; ++i) src[size_t(i)] = float(10 + i);
  emutest::DeviceArray<float> dSrc(src), out(36);
  EMU_CUDA(moekit::launch<groupOrder>(1, 1, 64, nullptr, dSrc.get(), out.get()));
  const std::vector<float> got = out.download();
  const auto slotLanded = [&](int phase, int slot) {
    bool landed = true, poisoned = true;
    for (int j = 0; j < 4; ++j) {
      const float v = got[size_t(12 * phase + 4 * slot + j)];
      landed = landed && v == src[size_t(4 * slot + j)];
      poisoned = poisoned && isPoison(v);
    }
    EMU_EXPECT(landed || poisoned, "a slot holds either the data or the poison");
    return landed;
  };
  EMU_EXPECT(slotLanded(0, 0) && !slotLanded(0, 1) && !slotLanded(0, 2), "wait<1>: only group 0 landed");
  EMU_EXPECT(slotLanded(1, 0) && slotLanded(1, 1) && !slotLanded(1, 2), "wait<0>: both groups, not the open copy");
  EMU_EXPECT(slotLanded(2, 0) && slotLanded(2, 1) && slotLanded(2, 2), "commit + wait<0>: everything");
}

// Thread 0 copies for the whole block; the others read after a __syncthreads. withWait = false is
// the bug (no wait before the barrier): the readers see the poison.
__global__ void producerConsumer(const float* src, bool withWait, float* out) {
  float* smem = moekit::dynamicShared<float>();
  if (threadIdx.x == 0) {
    for (int c = 0; c < 8; ++c) cpAsync16(smem + 4 * c, src + 4 * c);
    cpAsyncCommit();
    if (withWait) cpAsyncWait<0>();
  }
  __syncthreads();
  out[threadIdx.x] = smem[threadIdx.x];
}

EMU_CASE("cp.async: another thread's copies are visible after its wait and a __syncthreads, poison without the wait") {
  std::vector<float> src(32);
  for (int i = 0; i < 32; ++i) src[size_t(i)] = float(i * i);
  emutest::DeviceArray<float> dSrc(src), out(32);
  EMU_CUDA(moekit::launch<producerConsumer>(1, 32, 32 * sizeof(float), nullptr, dSrc.get(), true, out.get()));
  EMU_EXPECT(out.download() == src, "with the wait every thread reads the data");
  EMU_CUDA(moekit::launch<producerConsumer>(1, 32, 32 * sizeof(float), nullptr, dSrc.get(), false, out.get()));
  for (float v : out.download()) EMU_EXPECT(isPoison(v), "without the wait the readers see the poison");
}

__global__ void zeroFill(const float* src, float* out) {
  float* smem = moekit::dynamicShared<float>();
  cpAsync16OrZero(smem, src, true);
  cpAsync16OrZero(smem + 4, src + 4, false);
  cpAsyncCommit();
  cpAsyncWait<0>();
  for (int j = 0; j < 8; ++j) out[j] = smem[j];
}

EMU_CASE("cp.async: cpAsync16OrZero copies in bounds and writes 16 zero bytes out of bounds") {
  const std::vector<float> src = {1, 2, 3, 4, 5, 6, 7, 8};
  emutest::DeviceArray<float> dSrc(src), out(8);
  EMU_CUDA(moekit::launch<zeroFill>(1, 1, 32, nullptr, dSrc.get(), out.get()));
  EMU_EXPECT(out.download() == std::vector<float>({1, 2, 3, 4, 0, 0, 0, 0}), "in bounds copied, out of bounds zero");
}

__global__ void misalignedCopy(const float* src) {
  float* smem = moekit::dynamicShared<float>();
  cpAsync16(smem + 1, src);
  cpAsyncCommit();
  cpAsyncWait<0>();
}

EMU_CASE("cp.async: a destination not aligned to 16 bytes is reported") {
  emutest::DeviceArray<float> src(8);
  const std::string fault = emutest::expectFault([&] { moekit::launch<misalignedCopy>(1, 1, 64, nullptr, src.get()); });
  emutest::expectContains(fault, {"misalignedCopy", "cp.async at", "aligned to the 16-byte copy"});
}

}  // namespace
