// Grouped FP8 GEMM with block scaling on tensor cores (DESIGN F3), m-grouped contiguous NT with
// tile-padded groups, e4m3 × e4m3 → f32 (kernels and thread mappings: grouped_gemm_fp8.cu for
// mma.sync, grouped_gemm_fp8_wgmma.cu for warpgroup MMA on sm_90a; fp8GemmKernel picks one). The
// layout follows grouped_gemm_bf16.h; the operands are e4m3 codes (uint8_t bits, core/minifloat.h)
// with the block scales of DESIGN F2 (quantize_fp8.h makes them).
//
// Layout. Group g (an expert) owns rows_g ≥ 0 rows, starting at the padded row
//   start_0 = 0,   start_{g+1} = start_g + ⌈rows_g / 64⌉ · 64      (kFp8GemmRowAlign = 64)
// and Mpad = start_G (fp8GemmRowStarts). Padding rows [start_g + rows_g, start_{g+1}) of a and
// aScales are never read (the kernel zero-fills them on chip) and out's are never written.
//   a        [Mpad, lda] e4m3 row-major; group g uses its first k_g columns
//   aScales  [Mpad, ldaScales] f32: aScales[r, kb] scales a[r, 128·kb .. 128·kb + 127] (1 × 128
//            blocks); group g uses its first ⌈k_g/128⌉ columns
//   w_g      [n_g, k_g] e4m3 row-major (nn.Linear orientation), one pointer per group
//   wScales_g [⌈n_g/128⌉, ⌈k_g/128⌉] f32: wScales_g[nb, kb] scales the 128 × 128 block
//            w_g[128·nb.., 128·kb..]
//   out      [Mpad, ldOut] f32 row-major; group g writes its first n_g columns of its real rows
// A last K block shorter than 128 (k_g not a multiple of 128) is summed over the columns it has,
// as cpu/fp8.h defines it. For ops.groupedGemmFp8's b {q [E,N,K], scales [E, N/128, K/128]},
// w_g = q + g·N·K and wScales_g = scales + g·⌈N/128⌉·⌈K/128⌉.
//
// Order of the arithmetic (what the CPU reference must reproduce to match bit for bit). For an
// output (r, n) of group g, with nb = ⌊n/128⌋:
//   acc = 0
//   for kb = 0, 1, …, ⌈k_g/128⌉ − 1:
//     p   = Σ_{k in block kb} decode(a[r,k]) · decode(w_g[n,k])     fp32, by mma.sync m16n8k32 or
//           wgmma m64n64k32 in 4 steps of 32 (k ascending, each step's 32 products added onto p
//           in the tensor core's order, unspecified on hardware, k order on the emulator)
//     s   = aScales[r, kb] · wScales_g[nb, kb]                       fp32 product, rounded
//     acc = fmaf(p, s, acc)                                          one rounding
//   out[r, n] = acc
// This is DeepGEMM's promotion: the tensor cores never accumulate more than one 128-wide block
// (whatever their internal precision, ≈ 14 mantissa bits on Hopper, DeepSeek-V3 §3.3) before the
// sum moves to the fp32 accumulator. cpu::groupedGemmFp8Reference computes the same sum with exact
// block sums in float64 and one final rounding, so the two agree bit for bit whenever every p, s,
// p·s and running acc above is exact in fp32 (small-integer codes and power-of-two scales), and
// otherwise within (kLen + ⌈k_g/128⌉ + 2)·2⁻²⁴·Σ_kb |s|·Σ_k |a·w| on fp32 adders (kLen ≤ 128 the
// block length: one rounding per addition in p, one for s, one per fma, one for the reference).
//
// Requirements (checked, moekit::Error(Shape | Argument) naming the argument): lda a positive
// multiple of 16, k_g a positive multiple of 16 and ≤ lda, ⌈k_g/128⌉ ≤ ldaScales, n_g ≥ 1 and
// ≤ ldOut, a and each w_g 16-byte aligned (16-byte cp.async chunks), pointers not null where they
// will be read or written. The device must run the fp8 mma (compute capability 8.9 or newer:
// sm_89, sm_90a): on an older one every call throws moekit::Error(Device) before any launch
// (requireFp8Mma). Every pointer is DEVICE memory; work is enqueued on `stream` (the group table
// is uploaded on it into stream-ordered scratch, StreamBuffer); a failed launch throws
// moekit::Error(Device). Not done here: e5m2 operands, epilogues other than the store.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace moekit::cuda {

constexpr int kFp8GemmRowAlign = 64;  // the row tile, and the padding unit of the layout

struct Fp8GemmGroup {
  int rows = 0;                      // rows_g ≥ 0: real rows of the group
  int n = 0;                         // n_g ≥ 1: output columns
  int k = 0;                         // k_g: inner dimension, a positive multiple of 16
  const uint8_t* w = nullptr;        // DEVICE [n_g, k_g] e4m3
  const float* wScales = nullptr;    // DEVICE [⌈n_g/128⌉, ⌈k_g/128⌉] f32
};

// The kernel groupedGemmFp8 runs on CUDA device `device`:
//   Wgmma    warpgroup MMA (wgmma m64n64k32, grouped_gemm_fp8_wgmma.cu), on compute capability 9.0
//            when the code it loaded is the sm_90a build (fp8WgmmaLoaded; CMake builds 90a-real by
//            default);
//   MmaSync  mma.sync m16n8k32 (grouped_gemm_fp8.cu), on 8.9 and on devices newer than 9.0 (they run
//            the compute_90 PTX, which has no sm_90a instruction), and on 9.0 when the environment
//            sets MOEKIT_FP8_KERNEL=mma.sync.
// Both follow the order of the arithmetic above. Throws Error(Device) below 8.9 and Error(Argument)
// for another MOEKIT_FP8_KERNEL value.
enum class Fp8GemmKernel { MmaSync, Wgmma };
Fp8GemmKernel fp8GemmKernel(int device);

// start [G+1]: start[g] = first padded row of group g, start[G] = Mpad.
std::vector<int64_t> fp8GemmRowStarts(const std::vector<Fp8GemmGroup>& groups);

// out [Mpad, ldOut] = Σ_kb (a_g · aScales)(w_g · wScales_g)ᵀ on each group's real rows.
void groupedGemmFp8(const uint8_t* a, int lda, const float* aScales, int ldaScales,
                    const std::vector<Fp8GemmGroup>& groups, float* out, int ldOut, cudaStream_t stream);

}  // namespace moekit::cuda
