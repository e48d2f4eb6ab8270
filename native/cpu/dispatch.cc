#include "dispatch.h"

#include <string>

#include "../core/errors.h"
#include "thread_pool.h"

namespace moekit::cpu {

namespace {

// Fixed chunking of the parallel loops (rows, or columns where rows share a destination token),
// so the results do not depend on the thread count.
constexpr int64_t kRowGrain = 64;
constexpr int64_t kColumnGrain = 64;

void checkSizes(const char* op, int T, int H, int n) {
  if (T < 0 || H < 1 || n < 0)
    throw Error(ErrorKind::Shape, std::string(op) + ": expected T >= 0, H >= 1, n >= 0, got T = " +
                                      std::to_string(T) + ", H = " + std::to_string(H) +
                                      ", n = " + std::to_string(n));
}

void checkNotNull(const char* op, const char* name, const void* p) {
  if (!p) throw Error(ErrorKind::Argument, std::string(op) + ": " + name + " must not be null");
}

// Every entry of index [n] must lie in [0, bound).
void checkIndices(const char* op, const char* name, const int32_t* index, int n, int bound,
                  const char* boundName) {
  for (int i = 0; i < n; ++i)
    if (index[i] < 0 || index[i] >= bound)
      throw Error(ErrorKind::Argument, std::string(op) + ": " + name + "[" + std::to_string(i) +
                                           "] must be in [0, " + boundName + " = " +
                                           std::to_string(bound) + "), got " +
                                           std::to_string(index[i]));
}

}  // namespace

PermutationPlan planPermutation(int T, int E, int n, const int32_t* token, const int32_t* expert) {
  const char* op = "permute";
  if (T < 0 || E < 1 || n < 0)
    throw Error(ErrorKind::Shape, "permute: expected T >= 0, E >= 1, n >= 0, got T = " +
                                      std::to_string(T) + ", E = " + std::to_string(E) +
                                      ", n = " + std::to_string(n));
  if (n > 0) {
    checkNotNull(op, "token", token);
    checkNotNull(op, "expert", expert);
  }
  checkIndices(op, "token", token, n, T, "T");
  checkIndices(op, "expert", expert, n, E, "E");

  PermutationPlan plan;
  plan.tokens = T;
  plan.experts = E;
  // Pass 1: assignments in token order (stable), so pass 2 keeps token order within an expert.
  std::vector<int32_t> tokenStart(size_t(T) + 1, 0);
  std::vector<int32_t> byToken(static_cast<size_t>(n));
  for (int a = 0; a < n; ++a) ++tokenStart[size_t(token[a]) + 1];
  for (int t = 0; t < T; ++t) tokenStart[size_t(t) + 1] += tokenStart[size_t(t)];
  for (int a = 0; a < n; ++a) byToken[size_t(tokenStart[size_t(token[a])]++)] = a;

  plan.counts.assign(size_t(E), 0);
  for (int a = 0; a < n; ++a) ++plan.counts[size_t(expert[a])];
  plan.offsets.assign(size_t(E) + 1, 0);
  for (int e = 0; e < E; ++e)
    plan.offsets[size_t(e) + 1] = plan.offsets[size_t(e)] + plan.counts[size_t(e)];
  std::vector<int32_t> next(plan.offsets.begin(), plan.offsets.end() - 1);
  plan.rowToken.resize(size_t(n));
  plan.rowAssignment.resize(size_t(n));
  for (int32_t a : byToken) {
    const int32_t r = next[size_t(expert[a])]++;
    plan.rowAssignment[size_t(r)] = a;
    plan.rowToken[size_t(r)] = token[a];
  }
  return plan;
}

void permuteRows(const float* x, int T, int H, int n, const int32_t* rowToken, float* xp) {
  const char* op = "permute";
  checkSizes(op, T, H, n);
  if (n == 0) return;
  checkNotNull(op, "x", x);
  checkNotNull(op, "rowToken", rowToken);
  checkNotNull(op, "xp", xp);
  checkIndices(op, "rowToken", rowToken, n, T, "T");
  parallelFor(0, n, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* src = x + int64_t(rowToken[r]) * H;
      float* dst = xp + r * H;
      for (int h = 0; h < H; ++h) dst[h] = src[h];
    }
  });
}

void permuteRowsBackward(const float* dxp, int n, int H, const int32_t* rowToken, int T,
                         float* dx) {
  const char* op = "permute backward";
  checkSizes(op, T, H, n);
  if (n == 0) return;
  checkNotNull(op, "dxp", dxp);
  checkNotNull(op, "rowToken", rowToken);
  checkNotNull(op, "dx", dx);
  checkIndices(op, "rowToken", rowToken, n, T, "T");
  // Several rows may add into one token: split the columns, keep the row order within each.
  parallelFor(0, H, kColumnGrain, [&](int64_t h0, int64_t h1) {
    for (int r = 0; r < n; ++r) {
      const float* src = dxp + int64_t(r) * H;
      float* dst = dx + int64_t(rowToken[r]) * H;
      for (int64_t h = h0; h < h1; ++h) dst[h] += src[h];
    }
  });
}

void unpermuteRows(const float* yp, int n, int H, const int32_t* rowToken, const float* rowWeight,
                   int T, float* y) {
  const char* op = "unpermute";
  checkSizes(op, T, H, n);
  if (n == 0) return;
  checkNotNull(op, "yp", yp);
  checkNotNull(op, "rowToken", rowToken);
  checkNotNull(op, "y", y);
  checkIndices(op, "rowToken", rowToken, n, T, "T");
  // Several rows may add into one token: split the columns, keep the row order within each.
  parallelFor(0, H, kColumnGrain, [&](int64_t h0, int64_t h1) {
    for (int r = 0; r < n; ++r) {
      const float w = rowWeight ? rowWeight[r] : 1.0f;
      const float* src = yp + int64_t(r) * H;
      float* dst = y + int64_t(rowToken[r]) * H;
      for (int64_t h = h0; h < h1; ++h) dst[h] += w * src[h];
    }
  });
}

void unpermuteRowsBackward(const float* dy, int T, int H, const int32_t* rowToken,
                           const float* rowWeight, const float* yp, int n, float* dyp,
                           float* dRowWeight) {
  const char* op = "unpermute backward";
  checkSizes(op, T, H, n);
  if (n == 0) return;
  checkNotNull(op, "dy", dy);
  checkNotNull(op, "rowToken", rowToken);
  checkNotNull(op, "dyp", dyp);
  if (dRowWeight) checkNotNull(op, "yp", yp);
  checkIndices(op, "rowToken", rowToken, n, T, "T");
  parallelFor(0, n, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float w = rowWeight ? rowWeight[r] : 1.0f;
      const float* g = dy + int64_t(rowToken[r]) * H;
      float* dst = dyp + r * H;
      for (int h = 0; h < H; ++h) dst[h] = w * g[h];
      if (dRowWeight) {
        const float* o = yp + r * H;
        double acc = 0.0;
        for (int h = 0; h < H; ++h) acc += double(g[h]) * double(o[h]);
        dRowWeight[r] = float(acc);
      }
    }
  });
}

}  // namespace moekit::cpu
