// Where one output tile of the FP8 grouped GEMM finds its operands (layout: grouped_gemm_fp8.h),
// for both kernels (grouped_gemm_fp8.cu, grouped_gemm_fp8_wgmma.cu): its rows of a, the first of
// its weight rows, the weight scales of the 128-row block its columns lie in (row col0/128 of
// wScales_g [⌈n_g/128⌉, ⌈k_g/128⌉]), and how many of its kTileN columns are real.
#pragma once

#include <cstdint>

#include "../core/fp8_blocks.h"
#include "grouped_gemm_fp8.h"
#include "padded_groups.h"

namespace moekit::cuda {

struct Fp8TileOperands {
  const uint8_t* a;        // row 0 of the tile in a
  const uint8_t* w;        // row col0 of w_g
  const float* wScales;    // the tile's row of wScales_g, one scale per K block
  int cols;                // real columns, ≤ kTileN
};

template <int kTileN>
__device__ __forceinline__ Fp8TileOperands fp8TileOperands(const uint8_t* a, int lda, const PaddedTile& tile,
                                                           const Fp8GemmGroup& group) {
  static_assert(kFp8Block % kTileN == 0, "a column tile lies inside one 128-wide weight scale block");
  return Fp8TileOperands{a + tile.row0 * lda, group.w + int64_t(tile.col0) * group.k,
                         group.wScales + tile.col0 / kFp8Block * int(fp8BlockCount(group.k)),
                         group.n - tile.col0 < kTileN ? group.n - tile.col0 : kTileN};
}

}  // namespace moekit::cuda
