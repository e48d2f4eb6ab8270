#include "grouped_gemm.h"

#include <string>
#include <vector>

#include "../core/errors.h"
#include "sgemm.h"

namespace moekit::cpu {

namespace {

// Checks sizes and group row counts; pointers must be non-null wherever data is read or written.
void checkGroupedGemm(const float* a, const float* w, const int32_t* groupRows, int groups,
                      int64_t m, int n, int k) {
  if (groups < 1)
    throw Error(ErrorKind::Argument,
                "groupedGemm: groups must be at least 1, got " + std::to_string(groups));
  if (m < 0 || n < 1 || k < 1)
    throw Error(ErrorKind::Shape, "groupedGemm: expected M >= 0, N >= 1, K >= 1, got M = " +
                                      std::to_string(m) + ", N = " + std::to_string(n) +
                                      ", K = " + std::to_string(k));
  if (!groupRows) throw Error(ErrorKind::Argument, "groupedGemm: groupRows must not be null");
  int64_t total = 0;
  for (int g = 0; g < groups; ++g) {
    if (groupRows[g] < 0)
      throw Error(ErrorKind::Argument, "groupedGemm: groupRows[" + std::to_string(g) +
                                           "] must be >= 0, got " + std::to_string(groupRows[g]));
    total += groupRows[g];
  }
  if (total != m)
    throw Error(ErrorKind::Shape, "groupedGemm: groupRows must sum to the rows of a (" +
                                      std::to_string(m) + "), got " + std::to_string(total));
  if (!w) throw Error(ErrorKind::Argument, "groupedGemm: w must not be null");
  if (m > 0 && !a) throw Error(ErrorKind::Argument, "groupedGemm: a must not be null");
}

}  // namespace

void groupedGemmNTReference(const float* a, const float* w, const int32_t* groupRows, int groups,
                            int64_t m, int n, int k, float* out) {
  checkGroupedGemm(a, w, groupRows, groups, m, n, k);
  if (m > 0 && !out) throw Error(ErrorKind::Argument, "groupedGemm: out must not be null");
  int64_t row = 0;
  for (int g = 0; g < groups; ++g) {
    const float* wg = w + int64_t(g) * n * k;
    for (int64_t end = row + groupRows[g]; row < end; ++row) {
      const float* ar = a + row * k;
      float* o = out + row * n;
      for (int j = 0; j < n; ++j) {
        const float* wr = wg + int64_t(j) * k;
        float acc = 0.0f;
        for (int i = 0; i < k; ++i) acc += ar[i] * wr[i];
        o[j] = acc;
      }
    }
  }
}

void groupedGemmNTBackwardReference(const float* dOut, const float* a, const float* w,
                                    const int32_t* groupRows, int groups, int64_t m, int n, int k,
                                    float* dA, float* dW) {
  checkGroupedGemm(a, w, groupRows, groups, m, n, k);
  if (m > 0 && !dOut)
    throw Error(ErrorKind::Argument, "groupedGemm backward: dOut must not be null");
  int64_t row = 0;
  for (int g = 0; g < groups; ++g) {
    const float* wg = w + int64_t(g) * n * k;
    float* dWg = dW ? dW + int64_t(g) * n * k : nullptr;
    for (int64_t end = row + groupRows[g]; row < end; ++row) {
      const float* ar = a + row * k;
      const float* d = dOut + row * n;
      float* dAr = dA ? dA + row * k : nullptr;
      if (dAr)
        for (int i = 0; i < k; ++i) dAr[i] = 0.0f;
      for (int j = 0; j < n; ++j) {
        const float dj = d[j];
        if (dAr) {
          const float* wr = wg + int64_t(j) * k;
          for (int i = 0; i < k; ++i) dAr[i] += dj * wr[i];
        }
        if (dWg) {
          float* dWr = dWg + int64_t(j) * k;
          for (int i = 0; i < k; ++i) dWr[i] += dj * ar[i];
        }
      }
    }
  }
}

void groupedGemmNT(const float* a, const float* w, const int32_t* groupRows, int groups, int64_t m,
                   int n, int k, float* out, const int32_t* aRowMap) {
  checkGroupedGemm(a, w, groupRows, groups, m, n, k);
  if (m > 0 && !out) throw Error(ErrorKind::Argument, "groupedGemm: out must not be null");
  std::vector<GemmProblem> problems;
  int64_t row = 0;
  for (int g = 0; g < groups; ++g) {
    const int64_t rows = groupRows[g];
    if (rows > 0) {
      GemmProblem problem{GemmLayout::NT, rows, n, k, aRowMap ? a : a + row * k, k, w + int64_t(g) * n * k, k,
                          out + row * n, n, false};
      problem.aRows = aRowMap ? aRowMap + row : nullptr;
      problems.push_back(problem);
    }
    row += rows;
  }
  sgemmBatch(problems.data(), int(problems.size()));
}

void groupedGemmNTBackward(const float* dOut, const float* a, const float* w,
                           const int32_t* groupRows, int groups, int64_t m, int n, int k,
                           float* dA, float* dW, const int32_t* aRowMap) {
  checkGroupedGemm(a, w, groupRows, groups, m, n, k);
  if (m > 0 && !dOut)
    throw Error(ErrorKind::Argument, "groupedGemm backward: dOut must not be null");
  std::vector<GemmProblem> problems;
  int64_t row = 0;
  for (int g = 0; g < groups; ++g) {
    const int64_t rows = groupRows[g];
    const float* dOutG = dOut + row * n;
    const float* aG = aRowMap ? a : a + row * k;
    const float* wG = w + int64_t(g) * n * k;
    if (rows > 0 && dA)  // dA_g [rows,K] = dOut_g [rows,N] · w_g [N,K]
      problems.push_back({GemmLayout::NN, rows, k, n, dOutG, n, wG, k, dA + row * k, k, false});
    if (rows > 0 && dW) {  // dW_g [N,K] += dOut_g [rows,N]ᵀ · a_g [rows,K]
      GemmProblem problem{GemmLayout::TN, n, k, rows, dOutG, n, aG, k, dW + int64_t(g) * n * k, k, true};
      problem.bRows = aRowMap ? aRowMap + row : nullptr;
      problems.push_back(problem);
    }
    row += rows;
  }
  sgemmBatch(problems.data(), int(problems.size()));
}

}  // namespace moekit::cpu
