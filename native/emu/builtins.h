// CUDA device built-ins for kernels compiled by g++ against the SIMT emulator (included by emu.h).
//
// Per-thread built-ins (threadIdx, blockIdx, blockDim, gridDim) are __thread variables that the
// block scheduler sets before resuming a fiber; all fibers of a block share one OS thread, so a
// kernel reading threadIdx.x sees its own fiber's value. Warp intrinsics follow the PTX rules
// (shfl.sync, vote.sync, match.sync, redux.sync, bar.warp.sync); atomics are sequentially
// consistent read-modify-writes on host memory; fences are seq_cst fences. Device math intrinsics
// map to their exact (not fast-approximate) libm counterparts.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <type_traits>

#include "runtime.h"

extern __thread uint3 threadIdx;
extern __thread uint3 blockIdx;
extern __thread dim3 blockDim;
extern __thread dim3 gridDim;
constexpr int warpSize = 32;

namespace moekit::emu {

template <class T>
inline uint64_t toBits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "warp intrinsics take values of at most 8 bytes, as in CUDA");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

template <class T>
inline T fromBits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

template <class T>
inline T atomicRmw(T* address, T (*update)(T old, T operand), T operand) {
  T old;
  __atomic_load(address, &old, __ATOMIC_SEQ_CST);
  T next = update(old, operand);
  while (!__atomic_compare_exchange(address, &old, &next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    next = update(old, operand);
  }
  return old;
}

}  // namespace moekit::emu

// ---- block synchronisation ---------------------------------------------------------------------
inline void __syncthreads(moekit::emu::Site site = {}) {
  moekit::emu::syncThreads(moekit::emu::BarrierOp::Sync, 0, site);
}
inline int __syncthreads_count(int predicate, moekit::emu::Site site = {}) {
  return moekit::emu::syncThreads(moekit::emu::BarrierOp::Count, predicate, site);
}
inline int __syncthreads_and(int predicate, moekit::emu::Site site = {}) {
  return moekit::emu::syncThreads(moekit::emu::BarrierOp::And, predicate, site);
}
inline int __syncthreads_or(int predicate, moekit::emu::Site site = {}) {
  return moekit::emu::syncThreads(moekit::emu::BarrierOp::Or, predicate, site);
}

// ---- warp-synchronous intrinsics -----------------------------------------------------------------
inline void __syncwarp(unsigned mask = 0xffffffffu, moekit::emu::Site site = {}) {
  moekit::emu::warpCollective(moekit::emu::WarpOp::SyncWarp, mask, 0, 0, 32, site);
}

template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return fromBits<T>(warpCollective(WarpOp::ShflIdx, mask, toBits(var), srcLane, width, site).value);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return fromBits<T>(warpCollective(WarpOp::ShflUp, mask, toBits(var), int(delta), width, site).value);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return fromBits<T>(warpCollective(WarpOp::ShflDown, mask, toBits(var), int(delta), width, site).value);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return fromBits<T>(warpCollective(WarpOp::ShflXor, mask, toBits(var), laneMask, width, site).value);
}

inline unsigned __ballot_sync(unsigned mask, int predicate, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return unsigned(warpCollective(WarpOp::Ballot, mask, predicate != 0, 0, 32, site).value);
}
inline int __any_sync(unsigned mask, int predicate, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return int(warpCollective(WarpOp::Any, mask, predicate != 0, 0, 32, site).value);
}
inline int __all_sync(unsigned mask, int predicate, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return int(warpCollective(WarpOp::All, mask, predicate != 0, 0, 32, site).value);
}

template <class T>
inline unsigned __match_any_sync(unsigned mask, T value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return unsigned(warpCollective(WarpOp::MatchAny, mask, toBits(value), 0, 32, site).value);
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  const WarpResult r = warpCollective(WarpOp::MatchAll, mask, toBits(value), 0, 32, site);
  *pred = r.pred;
  return unsigned(r.value);
}

inline unsigned __reduce_add_sync(unsigned mask, unsigned value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return unsigned(warpCollective(WarpOp::ReduceAddU, mask, value, 0, 32, site).value);
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return unsigned(warpCollective(WarpOp::ReduceMinU, mask, value, 0, 32, site).value);
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return unsigned(warpCollective(WarpOp::ReduceMaxU, mask, value, 0, 32, site).value);
}
inline int __reduce_min_sync(unsigned mask, int value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return int(warpCollective(WarpOp::ReduceMinI, mask, uint32_t(value), 0, 32, site).value);
}
inline int __reduce_max_sync(unsigned mask, int value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return int(warpCollective(WarpOp::ReduceMaxI, mask, uint32_t(value), 0, 32, site).value);
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return unsigned(warpCollective(WarpOp::ReduceAnd, mask, value, 0, 32, site).value);
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return unsigned(warpCollective(WarpOp::ReduceOr, mask, value, 0, 32, site).value);
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned value, moekit::emu::Site site = {}) {
  using namespace moekit::emu;
  return unsigned(warpCollective(WarpOp::ReduceXor, mask, value, 0, 32, site).value);
}

// Lanes of the warp that have not exited. The emulator has no notion of convergence, so this is
// wider than on hardware inside divergent code: do not build _sync masks from it there.
inline unsigned __activemask() { return moekit::emu::activeMask(); }

inline void __nanosleep(unsigned) { moekit::emu::yieldThread(); }

// ---- atomics and fences --------------------------------------------------------------------------
#define MOEKIT_EMU_FETCH_OP(name, builtin, T) \
  inline T name(T* address, T value) { return builtin(address, value, __ATOMIC_SEQ_CST); }
MOEKIT_EMU_FETCH_OP(atomicAdd, __atomic_fetch_add, int)
MOEKIT_EMU_FETCH_OP(atomicAdd, __atomic_fetch_add, unsigned)
MOEKIT_EMU_FETCH_OP(atomicAdd, __atomic_fetch_add, unsigned long long)
MOEKIT_EMU_FETCH_OP(atomicSub, __atomic_fetch_sub, int)
MOEKIT_EMU_FETCH_OP(atomicSub, __atomic_fetch_sub, unsigned)
MOEKIT_EMU_FETCH_OP(atomicAnd, __atomic_fetch_and, int)
MOEKIT_EMU_FETCH_OP(atomicAnd, __atomic_fetch_and, unsigned)
MOEKIT_EMU_FETCH_OP(atomicAnd, __atomic_fetch_and, unsigned long long)
MOEKIT_EMU_FETCH_OP(atomicOr, __atomic_fetch_or, int)
MOEKIT_EMU_FETCH_OP(atomicOr, __atomic_fetch_or, unsigned)
MOEKIT_EMU_FETCH_OP(atomicOr, __atomic_fetch_or, unsigned long long)
MOEKIT_EMU_FETCH_OP(atomicXor, __atomic_fetch_xor, int)
MOEKIT_EMU_FETCH_OP(atomicXor, __atomic_fetch_xor, unsigned)
MOEKIT_EMU_FETCH_OP(atomicXor, __atomic_fetch_xor, unsigned long long)
MOEKIT_EMU_FETCH_OP(atomicExch, __atomic_exchange_n, int)
MOEKIT_EMU_FETCH_OP(atomicExch, __atomic_exchange_n, unsigned)
MOEKIT_EMU_FETCH_OP(atomicExch, __atomic_exchange_n, unsigned long long)
#undef MOEKIT_EMU_FETCH_OP

inline float atomicAdd(float* address, float value) {
  return moekit::emu::atomicRmw<float>(address, [](float a, float b) { return a + b; }, value);
}
inline double atomicAdd(double* address, double value) {
  return moekit::emu::atomicRmw<double>(address, [](double a, double b) { return a + b; }, value);
}
inline float atomicExch(float* address, float value) {
  float old;
  __atomic_exchange(address, &value, &old, __ATOMIC_SEQ_CST);
  return old;
}

#define MOEKIT_EMU_MINMAX(T)                                                                      \
  inline T atomicMax(T* address, T value) {                                                       \
    return moekit::emu::atomicRmw<T>(address, [](T a, T b) { return a < b ? b : a; }, value);    \
  }                                                                                               \
  inline T atomicMin(T* address, T value) {                                                       \
    return moekit::emu::atomicRmw<T>(address, [](T a, T b) { return b < a ? b : a; }, value);    \
  }
MOEKIT_EMU_MINMAX(int)
MOEKIT_EMU_MINMAX(unsigned)
MOEKIT_EMU_MINMAX(long long)
MOEKIT_EMU_MINMAX(unsigned long long)
#undef MOEKIT_EMU_MINMAX

inline unsigned atomicInc(unsigned* address, unsigned limit) {
  return moekit::emu::atomicRmw<unsigned>(address, [](unsigned old, unsigned l) { return old >= l ? 0u : old + 1; }, limit);
}
inline unsigned atomicDec(unsigned* address, unsigned limit) {
  return moekit::emu::atomicRmw<unsigned>(
      address, [](unsigned old, unsigned l) { return (old == 0 || old > l) ? l : old - 1; }, limit);
}

template <class T>
inline T moekitEmuAtomicCas(T* address, T compare, T value) {
  __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;  // holds the old value whether or not the exchange happened
}
inline int atomicCAS(int* a, int c, int v) { return moekitEmuAtomicCas(a, c, v); }
inline unsigned atomicCAS(unsigned* a, unsigned c, unsigned v) { return moekitEmuAtomicCas(a, c, v); }
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long c, unsigned long long v) {
  return moekitEmuAtomicCas(a, c, v);
}
inline unsigned short atomicCAS(unsigned short* a, unsigned short c, unsigned short v) {
  return moekitEmuAtomicCas(a, c, v);
}

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- integer and float intrinsics ----------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t bytes = (uint64_t(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= unsigned((bytes >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline int __mulhi(int a, int b) { return int((int64_t(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)((unsigned __int128)a * b >> 64);
}

inline int __float_as_int(float x) { return moekit::emu::fromBits<int>(moekit::emu::toBits(x)); }
inline unsigned __float_as_uint(float x) { return moekit::emu::fromBits<unsigned>(moekit::emu::toBits(x)); }
inline float __int_as_float(int x) { return moekit::emu::fromBits<float>(moekit::emu::toBits(x)); }
inline float __uint_as_float(unsigned x) { return moekit::emu::fromBits<float>(moekit::emu::toBits(x)); }
inline long long __double_as_longlong(double x) { return moekit::emu::fromBits<long long>(moekit::emu::toBits(x)); }
inline double __longlong_as_double(long long x) { return moekit::emu::fromBits<double>(moekit::emu::toBits(x)); }

inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanhf(float x) { return std::tanh(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline float __saturatef(float x) { return x > 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN → 0
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline int __float2int_rn(float x) { return int(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return int(x); }

#define MOEKIT_EMU_MINMAX_FN(T)                        \
  inline T min(T a, T b) { return b < a ? b : a; }     \
  inline T max(T a, T b) { return a < b ? b : a; }
MOEKIT_EMU_MINMAX_FN(int)
MOEKIT_EMU_MINMAX_FN(unsigned)
MOEKIT_EMU_MINMAX_FN(long)
MOEKIT_EMU_MINMAX_FN(unsigned long)
MOEKIT_EMU_MINMAX_FN(long long)
MOEKIT_EMU_MINMAX_FN(unsigned long long)
#undef MOEKIT_EMU_MINMAX_FN
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }

template <class T>
inline T __ldg(const T* p) {
  return *p;
}

inline long long clock64() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
