// Block-wide selection of the `take`-th best candidate by capacity::RankKey (core/capacity.h), the
// threshold behind C2/C3 capacity (capacity.cu) and R9 expert choice (expert_choice.cu): the
// candidates whose key is atLeast the result are exactly the `take` best ones (keys are distinct,
// they carry the id).
//
// MSB-first radix selection over the 96-bit key (hi 64 bits, then lo 32), 8 bits per pass: every
// thread histograms the digit of the candidates that still match the decided prefix (shared
// integer atomics), then thread 0 walks the 256 bins from the top, skipping whole bins while they
// hold fewer keys than still needed. 12 passes of n/blockDim items per thread; no sort, no
// shared-memory bound on n, integer counts only (the result does not depend on thread order).
// Device code only; include after emu/launch.h.
#pragma once

#include <cstdint>

#include "../core/capacity.h"

namespace moekit::cuda {

constexpr int kSelectPasses = 12;   // 96 bits / 8
constexpr int kSelectLoPasses = 4;  // passes over the lo 32 bits

// Digit `pass` (0 = the top 8 bits of hi) of a key.
__device__ __forceinline__ unsigned selectDigit(capacity::RankKey key, int pass) {
  return pass < 8 ? unsigned(key.hi >> (56 - 8 * pass)) & 255u
                  : unsigned(key.lo >> (24 - 8 * (pass - 8))) & 255u;
}

// Whether the digits [0, pass) of key equal those of prefix.
__device__ __forceinline__ bool matchesPrefix(capacity::RankKey key, capacity::RankKey prefix,
                                              int pass) {
  if (pass <= 8) return pass == 0 || (key.hi >> (64 - 8 * pass)) == (prefix.hi >> (64 - 8 * pass));
  const int loBits = 8 * (pass - 8);
  return key.hi == prefix.hi && (key.lo >> (32 - loBits)) == (prefix.lo >> (32 - loBits));
}

// The take-th best key (take in [1, number of candidates]) among items i in [0, n) for which
// keyOf(i, key) returns true. firstPass > 0 skips passes whose digits are 0 for every candidate
// (kSelectPasses − kSelectLoPasses when every hi is 0). Called by every thread of the block.
template <class KeyOf>
__device__ capacity::RankKey selectKth(int n, int64_t take, int firstPass, KeyOf keyOf) {
  __shared__ int hist[256];
  __shared__ capacity::RankKey prefix;
  __shared__ int64_t remaining;  // keys still to pass, counted from the top, among the matches
  const int tid = int(threadIdx.x), threads = int(blockDim.x);
  if (tid == 0) {
    prefix = capacity::RankKey{0, 0};
    remaining = take;
  }
  __syncthreads();
  for (int pass = firstPass; pass < kSelectPasses; ++pass) {
    for (int b = tid; b < 256; b += threads) hist[b] = 0;
    __syncthreads();
    const capacity::RankKey decided = prefix;
    for (int i = tid; i < n; i += threads) {
      capacity::RankKey key;
      if (keyOf(i, key) && matchesPrefix(key, decided, pass))
        atomicAdd(&hist[selectDigit(key, pass)], 1);
    }
    __syncthreads();
    if (tid == 0) {
      int b = 255;
      while (b > 0 && remaining > hist[b]) remaining -= hist[b--];
      if (pass < 8)
        prefix.hi |= uint64_t(b) << (56 - 8 * pass);
      else
        prefix.lo |= uint32_t(b) << (24 - 8 * (pass - 8));
    }
    __syncthreads();
  }
  return prefix;
}

}  // namespace moekit::cuda
