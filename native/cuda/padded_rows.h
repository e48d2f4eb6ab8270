// Rows between the compact permuted layout of cuda::Experts (expert e owns rows [start[e],
// start[e+1]), no gaps) and the padded layout of the tensor-core grouped GEMMs (padded_groups.h:
// expert e's rows start at paddedStart[e], a multiple of the row tile), with the conversions the
// GEMMs' operands need on the way in (f32 → bf16 bits; e4m3 codes and their scales copied) and
// zero columns appended to reach an inner dimension the kernels take. Kernels and thread mappings:
// padded_rows.cu.
//
// A row map rowMap [rows] gives the padded row of each compact row; null means the identity (a
// weight tensor [count·N, K] gets only its zero columns). Every pointer is DEVICE memory; work is
// enqueued on `stream`; a failed launch throws moekit::Error(Device) naming the kernel. Sizes are
// the caller's to validate (cuda::Experts does).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../layer/stage_types.h"

namespace moekit::cuda {

// paddedRow [n]: r − start[e] + paddedStart[e] for the expert e with start[e] ≤ r < start[e+1].
// start, paddedStart [experts+1].
void paddedRowMap(const int32_t* start, const int32_t* paddedStart, int experts, int n,
                  int32_t* paddedRow, cudaStream_t stream);

// dst [·, ldDst]: row rowMap[r] = src row r [cols] (r < rows) then ldDst − cols zeros; other rows
// of dst are not written. ldDst ≥ cols. The bf16 form stores encodeBF16(v) (RNE) of each value.
void packRowsBf16(const float* src, int64_t rows, int cols, const int32_t* rowMap, uint16_t* dst,
                  int ldDst, cudaStream_t stream);
void packRows(const uint8_t* src, int64_t rows, int cols, const int32_t* rowMap, uint8_t* dst,
              int ldDst, cudaStream_t stream);
void packRows(const float* src, int64_t rows, int cols, const int32_t* rowMap, float* dst, int ldDst,
              cudaStream_t stream);

// dst [rows, cols] row r = src row rowMap[r] of [·, ldSrc] (its first cols values); the add form
// adds it to dst's row instead (one f32 addition per element).
void unpackRows(const float* src, int ldSrc, const int32_t* rowMap, int64_t rows, int cols,
                float* dst, cudaStream_t stream);
void addUnpackedRows(const float* src, int ldSrc, const int32_t* rowMap, int64_t rows, int cols,
                     float* dst, cudaStream_t stream);

// X1's outputs back to the compact layout: a1 (and a3, swiglu) rows from the padded GEMM outputs
// a1Pad (a3Pad) [·, ldPad], and h = act(a1[, a3]) (core/activation.h) — for swiglu h = hPad's
// row instead when hPad is not null (the swiglu epilogue computed it already). a1, a3, h [rows, F].
void unpackUpProjection(Activation act, const float* a1Pad, const float* a3Pad, const float* hPad,
                        int ldPad, const int32_t* rowMap, int64_t rows, int F, float* a1, float* a3,
                        float* h, cudaStream_t stream);

// X1's backward into the padded layout, for the backward GEMMs: for each compact row r with
// padded row p = rowMap[r], dh = rowWeight[r]·gPad[p][c] (g = dy·w2, unweighted) and
// da1 (da3, swiglu) = the activation's backward at a1[r][c] (a3[r][c]) (core/activation.h), stored
// as bf16 bits (RNE) at da1[p][c] (da3[p][c]) for c < F and 0 for F ≤ c < ldPad. gPad, da1, da3
// [·, ldPad]; a1, a3 [rows, F] compact; rowWeight [rows].
void packActivationBackward(Activation act, const float* gPad, int ldPad, const int32_t* rowMap,
                            int64_t rows, int F, const float* rowWeight, const float* a1,
                            const float* a3, uint16_t* da1, uint16_t* da3, cudaStream_t stream);

}  // namespace moekit::cuda
