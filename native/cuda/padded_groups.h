// The padded m-grouped layout the tensor-core grouped GEMMs share (grouped_gemm_bf16.h,
// grouped_gemm_fp8.h): group g's rows start at start_g, the previous start plus its rows rounded up
// to the row tile, and the grid is a list of output tiles. Host code; the Group types only need an
// int `rows` (negative counts as 0) and an int `n`.
#pragma once

#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/errors.h"

namespace moekit::cuda {

// One output tile: rows [row0, row0 + rows) of the padded layout (rows ≤ the row tile), columns
// [col0, col0 + column tile) of group `group`.
struct PaddedTile {
  int64_t row0;
  int group;
  int rows;
  int col0;
};

// start [G+1]: start_0 = 0, start_{g+1} = start_g + ⌈rows_g / tileRows⌉·tileRows.
template <int kTileRows, class Group>
std::vector<int64_t> paddedRowStarts(const std::vector<Group>& groups) {
  std::vector<int64_t> start(groups.size() + 1, 0);
  for (size_t g = 0; g < groups.size(); ++g) {
    const int64_t rows = groups[g].rows > 0 ? groups[g].rows : 0;
    start[g + 1] = start[g] + (rows + kTileRows - 1) / kTileRows * kTileRows;
  }
  return start;
}

// Every tile holding at least one real row, group by group, rows then columns. Throws
// Error(Shape) naming `api` past 2³¹ − 1 tiles (the grid's x dimension).
template <int kTileRows, int kTileCols, class Group>
std::vector<PaddedTile> paddedTiles(const std::vector<Group>& groups, const char* api) {
  const std::vector<int64_t> start = paddedRowStarts<kTileRows>(groups);
  std::vector<PaddedTile> tiles;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int r = 0; r < groups[g].rows; r += kTileRows)
      for (int c = 0; c < groups[g].n; c += kTileCols)
        tiles.push_back(PaddedTile{start[g] + r, int(g), groups[g].rows - r < kTileRows ? groups[g].rows - r : kTileRows, c});
    if (tiles.size() > size_t(INT_MAX))
      throw Error(ErrorKind::Shape, std::string(api) + ": groups: more than 2^31 − 1 output tiles");
  }
  return tiles;
}

// An operand cp.async reads in 16-byte chunks: not null, 16-byte aligned (Error(Argument)).
inline void checkChunkPointer(const char* api, const std::string& name, const void* p) {
  if (!p) throw Error(ErrorKind::Argument, std::string(api) + ": " + name + ": expected a 16-byte aligned device pointer, got null");
  const uintptr_t offset = reinterpret_cast<uintptr_t>(p) % 16;
  if (offset != 0)
    throw Error(ErrorKind::Argument, std::string(api) + ": " + name +
                                         ": expected a 16-byte aligned device pointer, got one at " +
                                         std::to_string(offset) + " bytes past a 16-byte boundary");
}

}  // namespace moekit::cuda
