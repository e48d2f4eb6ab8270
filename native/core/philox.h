// Philox-4x32-10 counter-based generator (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC'11). One call maps a 128-bit counter and a 64-bit key to four 32-bit words; the
// CPU backend and every CUDA kernel use this one definition, so both draw identical streams.
//
// Round: (hi0,lo0) = M0·c0, (hi1,lo1) = M1·c2 (32×32→64 products),
//        c' = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); then the key is bumped by the Weyl
//        constants (W0, W1) before every round but the first.
#pragma once

#include <cstdint>

#include "hd.h"

namespace moekit {

struct Philox4 {
  uint32_t w[4];
};

MOEKIT_HD inline Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    const uint64_t p0 = uint64_t(kM0) * c.w[0];
    const uint64_t p1 = uint64_t(kM1) * c.w[2];
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    c = Philox4{{hi1 ^ c.w[1] ^ k0, lo1, hi0 ^ c.w[3] ^ k1, lo0}};
  }
  return c;
}

// A word to a uniform in the open interval (0, 1): u = ((w >> 8) + 0.5) · 2⁻²⁴ (DESIGN R10).
MOEKIT_HD inline double philoxUniform(uint32_t w) {
  return (double(w >> 8) + 0.5) * (1.0 / 16777216.0);
}

}  // namespace moekit
