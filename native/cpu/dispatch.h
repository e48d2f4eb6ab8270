// The local stages of dispatch and combine (Megatron's permute / unpermute; no communication
// here), also exposed as ops.permute / ops.unpermute.
//
// Vocabulary: n assignments a = (token[a], expert[a]) of T tokens to E experts. Permuting orders
// them by expert, ties in token order (then assignment order), so expert e owns the contiguous
// permuted rows [offsets[e], offsets[e+1]) — the layout groupedGemmNT takes. The row map says
// which token (and which assignment) each permuted row came from.
//
//   permute       xp[r] = x[rowToken[r]]                       x [T,H] → xp [n,H]
//   unpermute     y[rowToken[r]] += rowWeight[r] · yp[r]       yp [n,H] → y [T,H]
// and their backwards. A token may appear in any number of rows (top-k, shared experts) or in
// none (dropped).
#pragma once

#include <cstdint>
#include <vector>

namespace moekit::cpu {

struct PermutationPlan {
  int tokens = 0, experts = 0;
  std::vector<int32_t> counts;         // [E] rows per expert
  std::vector<int32_t> offsets;        // [E+1] first row of each expert; offsets[E] = n
  std::vector<int32_t> rowToken;       // [n] the row map: token of permuted row r
  std::vector<int32_t> rowAssignment;  // [n] assignment a that permuted row r holds
};

// Sorts the assignments (stable counting sort by token, then by expert). token [n] in [0,T),
// expert [n] in [0,E); throws Error(Argument) naming the first offending entry.
PermutationPlan planPermutation(int T, int E, int n, const int32_t* token, const int32_t* expert);

// xp [n,H] = x[rowToken[r]] (overwritten). x [T,H].
void permuteRows(const float* x, int T, int H, int n, const int32_t* rowToken, float* xp);
// dx [T,H] += dxp[r] at rowToken[r].
void permuteRowsBackward(const float* dxp, int n, int H, const int32_t* rowToken, int T, float* dx);

// y [T,H] += rowWeight[r] · yp[r] at rowToken[r]; rowWeight [n] null means weight 1.
void unpermuteRows(const float* yp, int n, int H, const int32_t* rowToken, const float* rowWeight,
                   int T, float* y);
// dyp [n,H] = rowWeight[r] · dy[rowToken[r]] (overwritten);
// dRowWeight [n] = dy[rowToken[r]] · yp[r] (overwritten; null = not wanted, then yp may be null).
void unpermuteRowsBackward(const float* dy, int T, int H, const int32_t* rowToken,
                           const float* rowWeight, const float* yp, int n, float* dyp,
                           float* dRowWeight);

}  // namespace moekit::cpu
