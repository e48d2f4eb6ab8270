#include "grouped_gemm.h"

#include <string>
#include <vector>

#include "../core/errors.h"
#include "sgemm.h"

namespace moekit::cpu {

namespace {

// rowToken [m] must lie in [0, T).
void checkRowTokens(const char* op, const int32_t* rowToken, int64_t m, int T) {
  if (m > 0 && !rowToken)
    throw Error(ErrorKind::Argument, std::string(op) + ": rowToken must not be null");
  for (int64_t r = 0; r < m; ++r)
    if (rowToken[r] < 0 || rowToken[r] >= T)
      throw Error(ErrorKind::Argument, std::string(op) + ": rowToken[" + std::to_string(r) +
                                           "] must be in [0, T = " + std::to_string(T) + "), got " +
                                           std::to_string(rowToken[r]));
}

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
    if (rows > 0 && dA) {  // dA_g [rows,K] = dOut_g [rows,N] · w_g [N,K] (scattered with a map)
      GemmProblem problem{GemmLayout::NN, rows, k, n, dOutG, n, wG, k,
                          aRowMap ? dA : dA + row * k, k, aRowMap != nullptr};
      problem.cRows = aRowMap ? aRowMap + row : nullptr;
      problems.push_back(problem);
    }
    if (rows > 0 && dW) {  // dW_g [N,K] += dOut_g [rows,N]ᵀ · a_g [rows,K]
      GemmProblem problem{GemmLayout::TN, n, k, rows, dOutG, n, aG, k, dW + int64_t(g) * n * k, k, true};
      problem.bRows = aRowMap ? aRowMap + row : nullptr;
      problems.push_back(problem);
    }
    row += rows;
  }
  sgemmBatch(problems.data(), int(problems.size()));
}

void groupedGemmNTCombine(const float* a, const float* w, const int32_t* groupRows, int groups,
                          int64_t m, int n, int k, const int32_t* rowToken, const float* rowWeight,
                          int T, float* y) {
  checkGroupedGemm(a, w, groupRows, groups, m, n, k);
  checkRowTokens("groupedGemm combine", rowToken, m, T);
  if (m > 0 && !y) throw Error(ErrorKind::Argument, "groupedGemm combine: y must not be null");
  std::vector<GemmProblem> problems;
  int64_t row = 0;
  for (int g = 0; g < groups; ++g) {
    const int64_t rows = groupRows[g];
    if (rows > 0) {
      GemmProblem problem{GemmLayout::NT, rows, n, k, a + row * k, k, w + int64_t(g) * n * k, k,
                          y, n, true};
      problem.cRows = rowToken + row;
      problem.cScale = rowWeight ? rowWeight + row : nullptr;
      problems.push_back(problem);
    }
    row += rows;
  }
  sgemmBatch(problems.data(), int(problems.size()));
}

void groupedGemmNTCombineBackward(const float* dy, const float* a, const float* w,
                                  const int32_t* groupRows, int groups, int64_t m, int n, int k,
                                  const int32_t* rowToken, const float* rowWeight, int T,
                                  float* g, float* dW) {
  checkGroupedGemm(a, w, groupRows, groups, m, n, k);
  checkRowTokens("groupedGemm combine backward", rowToken, m, T);
  if (m > 0 && !dy)
    throw Error(ErrorKind::Argument, "groupedGemm combine backward: dy must not be null");
  std::vector<GemmProblem> problems;
  int64_t row = 0;
  for (int q = 0; q < groups; ++q) {
    const int64_t rows = groupRows[q];
    const float* wG = w + int64_t(q) * n * k;
    if (rows > 0 && g) {  // g_q [rows,K] = dy[rowToken] [rows,N] · w_q [N,K]
      GemmProblem problem{GemmLayout::NN, rows, k, n, dy, n, wG, k, g + row * k, k, false};
      problem.aRows = rowToken + row;
      problems.push_back(problem);
    }
    if (rows > 0 && dW) {  // dW_q [N,K] += (rowWeight ⊙ dy[rowToken])ᵀ [N,rows] · a_q [rows,K]
      GemmProblem problem{GemmLayout::TN, n, k, rows, dy, n, a + row * k, k,
                          dW + int64_t(q) * n * k, k, true};
      problem.aRows = rowToken + row;
      problem.aScale = rowWeight ? rowWeight + row : nullptr;
      problems.push_back(problem);
    }
    row += rows;
  }
  sgemmBatch(problems.data(), int(problems.size()));
}

}  // namespace moekit::cpu
