// fp32 GEMM for the CPU backend: cache-blocked, packed, register-blocked, threaded over
// cpuThreadPool(). The three layouts the expert matmuls need (row-major, leading dimensions in
// elements; "T" means the operand is stored transposed):
//
//   NT  C[M,N] (+)= A[M,K] · B[N,K]ᵀ    forward:      out = a · wᵀ        (w as nn.Linear [N,K])
//   NN  C[M,N] (+)= A[M,K] · B[K,N]     input grad:   dA  = dOut · w
//   TN  C[M,N] (+)= A[K,M]ᵀ · B[K,N]    weight grad:  dW += dOutᵀ · a
//
// Fusions of the expert FFN (GemmProblem fields below): row gathers and scales in the packing
// (the permute, the combine's weights in its backward) and a row scatter of C (the weighted
// combine, the permute's backward).
//
// Determinism: every C element is computed by one thread, in a fixed order over K that depends
// only on the problem's K (blocks of sgemm.cc's KC, FMA in k order inside a block), so results are
// bit-identical for any thread count and any split of the work. Scattered rows (cRows) add into
// each element of c in one fixed order, problem order then row order (sgemm.cc: one thread owns
// a column strip of every scattering problem). Results differ between the AVX2+FMA and the
// portable kernel (fused vs separate multiply-add), chosen once per process from the CPU, or by
// MOEKIT_SGEMM=portable (tests of the fallback; MOEKIT_SGEMM=avx2 on a CPU without AVX2+FMA, or
// any other value, is Error(Argument) on first use).
#pragma once

#include <cstdint>

namespace moekit::cpu {

enum class GemmLayout { NT, NN, TN };

// One C = A·B (or C += A·B) problem. M, N >= 0 and K >= 0 (K = 0 gives C = 0, or leaves C alone
// when accumulating); a, b and c may be null only when the matrix they point at is empty.
// Leading dimensions are the row strides of the stored matrices: lda >= K for NT/NN and >= M for
// TN; ldb >= K for NT and >= N for NN/TN; ldc >= N. C must not overlap A or B.
struct GemmProblem {
  GemmLayout layout = GemmLayout::NT;
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;  // C += A·B instead of C = A·B
  // Row maps, the permute of the experts fused into the packing. The stored rows of A are its
  // rows i for NT/NN and its K steps p for TN: stored row s is read at a + aRows[s]·lda and
  // multiplied by aScale[s] as it is packed; TN reads row p of B at b + bRows[p]·ldb. Null = rows
  // in order, scale 1. Unchecked indices: the caller's plan (dispatch.h) produced them.
  const int32_t* aRows = nullptr;
  const float* aScale = nullptr;
  const int32_t* bRows = nullptr;
  // Row scatter, the weighted combine fused into the GEMM: row i of A·B is added to row cRows[i]
  // of c, multiplied by cScale[i] (null = 1): c[cRows[i]·ldc + j] += cScale[i]·(A·B)(i,j), the
  // product rounded to fp32 first. Needs accumulate. Several rows, and several problems, may add
  // into one row of c (see Determinism above).
  const int32_t* cRows = nullptr;
  const float* cScale = nullptr;
};

// Runs every problem; their tiles share one parallel loop, so many small problems (the experts of
// a grouped GEMM) keep all threads busy. Problems must not write overlapping C, except
// scattering problems (cRows) among themselves. Throws Error(Shape/Argument) naming the problem
// and field on a bad size, stride, null pointer or combination of fusions.
void sgemmBatch(const GemmProblem* problems, int count);

// sgemmBatch of one problem.
void sgemm(const GemmProblem& problem);

// "avx2+fma" or "portable": the micro-kernel this process uses.
const char* sgemmKernelName();

}  // namespace moekit::cpu
