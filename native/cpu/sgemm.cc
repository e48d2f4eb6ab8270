// Blocked, packed, threaded fp32 GEMM (layouts and determinism in sgemm.h).
//
// Math: C(i,j) = [accumulate] C(i,j) + Σ_p A(i,p)·B(p,j), with A(i,p) / B(p,j) read through the
// layout (NT: B(p,j) = b[j·ldb + p]; TN: A(i,p) = a[p·lda + i]).
//
// Blocking (BLIS / GotoBLAS): K is cut into ⌈K/KC⌉ near-equal blocks of at most KC = 256 steps.
// A tile of C (at most NC columns, any rows; NC sized from the L2, 768 on a 1 MiB L2) is one
// task. Per K block the task packs its B panel (kc × ≤NC, ~3/4 of L2) into NR-column slivers,
// then per MC = 144 rows packs the A block (144 × kc, 144 KiB) into MR-row slivers and runs the
// MR × NR = 6 × 16 micro-kernel (sgemm_kernel.h) over every sliver pair, B sliver outermost so
// its 16 KiB stays in L1. The first K block writes C (unless accumulating), later blocks add to
// it; tiles cut by the matrix edge go through a 6 × 16 scratch tile so they round exactly like
// full ones.
//
// Threads: the tasks of every problem in the batch form one parallelFor over cpuThreadPool(),
// one task per chunk, handed out in order (largest problem first); each task owns its C tile and
// packs into thread-local buffers. Task sizes aim at 4 tasks per thread (at least 2 MFLOP each;
// a batch under 4 MFLOP stays on the calling thread): columns split into ⌈N/NC⌉ equal strips,
// rows into as many equal blocks as needed. The split never touches K: it changes speed, never
// bits.
#include "sgemm.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <new>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "../core/errors.h"
#include "sgemm_kernel.h"
#include "thread_pool.h"

namespace moekit::cpu {

namespace {

constexpr int64_t kMR = kGemmMR, kNR = kGemmNR;
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 144;  // multiple of MR
constexpr double kMinTaskFlops = 2e6;
constexpr int kTasksPerThread = 4;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t roundUp(int64_t a, int64_t b) { return ceilDiv(a, b) * b; }

// NC, the widest task: its packed KC × NC panel of B takes ~3/4 of the per-core L2 (the rest is
// for the 144 KiB A block), 768 columns on a 1 MiB L2. Read once; it never changes results.
int64_t panelColumns() {
  static const int64_t nc = [] {
    long l2 = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (l2 <= 0) l2 = 512 * 1024;
    const int64_t cols = int64_t(l2) * 3 / 4 / int64_t(kKC * sizeof(float));
    return std::clamp(cols / kNR * kNR, int64_t(256), int64_t(2048));
  }();
  return nc;
}

// The portable micro-kernel and packs: plain loops the compiler vectorises for the baseline ISA.
void gemmMicroKernelPortable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             bool accumulate) {
  float acc[kMR][kNR] = {};
  for (int64_t p = 0; p < kc; ++p, a += kMR, b += kNR)
    for (int r = 0; r < kMR; ++r) {
      const float ar = a[r];
      for (int j = 0; j < kNR; ++j) acc[r][j] += ar * b[j];
    }
  for (int r = 0; r < kMR; ++r)
    for (int j = 0; j < kNR; ++j)
      c[r * ldc + j] = accumulate ? c[r * ldc + j] + acc[r][j] : acc[r][j];
}

template <int64_t W>
void packKContiguousPortable(const float* src, int64_t rowStride, int64_t kc, float* out) {
  const float* row[W];
  for (int64_t l = 0; l < W; ++l) row[l] = src + l * rowStride;
  for (int64_t p = 0; p < kc; ++p, out += W)
    for (int64_t l = 0; l < W; ++l) out[l] = row[l][p];
}

struct KernelChoice {
  GemmMicroKernel micro;
  GemmPackKContiguous packA, packB;  // full MR / NR slivers
  const char* name;
};

KernelChoice chooseKernel() {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {gemmMicroKernelAvx2, gemmPackKContiguousAvx2MR, gemmPackKContiguousAvx2NR, "avx2+fma"};
#endif
  return {gemmMicroKernelPortable, packKContiguousPortable<kMR>, packKContiguousPortable<kNR>,
          "portable"};
}

const KernelChoice& kernel() {
  static const KernelChoice choice = chooseKernel();
  return choice;
}

// A 64-byte aligned float scratch buffer that only grows.
class PackBuffer {
 public:
  float* get(int64_t count) {
    if (count > size_) {
      data_.reset(static_cast<float*>(::operator new(size_t(count) * sizeof(float),
                                                     std::align_val_t(64))));
      size_ = count;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete(p, std::align_val_t(64)); }
  };
  std::unique_ptr<float, Free> data_;
  int64_t size_ = 0;
};

// Copies kc steps of `lanes` strided streams into kc × W interleaved order:
// out[p·W + l] = src[l·laneStride + p·stepStride] for l < lanes, 0 for lanes <= l < W.
// W = MR packs A slivers, W = NR packs B slivers. Full slivers read along k go to the ISA's
// transposing pack, full slivers read across k are row copies, edge slivers are zero-padded.
template <int64_t W>
void packSliver(const float* src, int64_t laneStride, int64_t stepStride, int64_t lanes,
                int64_t kc, float* out) {
  if (lanes == W && stepStride == 1) {
    (W == kMR ? kernel().packA : kernel().packB)(src, laneStride, kc, out);
    return;
  }
  if (lanes == W && laneStride == 1) {
    for (int64_t p = 0; p < kc; ++p, out += W) std::copy_n(src + p * stepStride, W, out);
    return;
  }
  for (int64_t p = 0; p < kc; ++p, out += W)
    for (int64_t l = 0; l < W; ++l) out[l] = l < lanes ? src[l * laneStride + p * stepStride] : 0.0f;
}

// Packs A rows [i0, i0+mc) × K steps [p0, p0+kc) into ⌈mc/MR⌉ slivers of kc × MR.
void packA(const GemmProblem& pr, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* out) {
  const bool tn = pr.layout == GemmLayout::TN;  // A(i,p) = a[p·lda + i], else a[i·lda + p]
  const int64_t rowStride = tn ? 1 : pr.lda, stepStride = tn ? pr.lda : 1;
  for (int64_t s = 0; s < mc; s += kMR, out += kc * kMR) {
    const int64_t lanes = std::min(kMR, mc - s);
    if (!pr.aRows) {
      packSliver<kMR>(pr.a + (i0 + s) * rowStride + p0 * stepStride, rowStride, stepStride, lanes, kc, out);
      continue;
    }
    // Gathered rows: copy them next to each other (in L1), then pack as contiguous rows.
    alignas(64) float rows[kMR * kKC];
    for (int64_t l = 0; l < lanes; ++l)
      std::copy_n(pr.a + int64_t(pr.aRows[i0 + s + l]) * pr.lda + p0, kc, rows + l * kc);
    packSliver<kMR>(rows, kc, 1, lanes, kc, out);
  }
}

// Packs B K steps [p0, p0+kc) × columns [j0, j0+nc) into ⌈nc/NR⌉ slivers of kc × NR.
void packB(const GemmProblem& pr, int64_t j0, int64_t nc, int64_t p0, int64_t kc, float* out) {
  const bool nt = pr.layout == GemmLayout::NT;  // B(p,j) = b[j·ldb + p], else b[p·ldb + j]
  const int64_t colStride = nt ? pr.ldb : 1, stepStride = nt ? 1 : pr.ldb;
  for (int64_t s = 0; s < nc; s += kNR, out += kc * kNR) {
    const int64_t lanes = std::min(kNR, nc - s);
    if (!pr.bRows) {
      packSliver<kNR>(pr.b + (j0 + s) * colStride + p0 * stepStride, colStride, stepStride, lanes, kc, out);
      continue;
    }
    // TN with gathered rows: step p is row bRows[p0 + p] of b; the same values packSliver copies.
    for (int64_t p = 0; p < kc; ++p) {
      const float* row = pr.b + int64_t(pr.bRows[p0 + p]) * pr.ldb + j0 + s;
      for (int64_t l = 0; l < kNR; ++l) out[p * kNR + l] = l < lanes ? row[l] : 0.0f;
    }
  }
}

// A task: the C tile rows [i0, i1) × columns [j0, j1) of one problem, j1 − j0 <= NC.
struct Task {
  int problem;
  int64_t i0, i1, j0, j1;
};

void runTask(const GemmProblem& pr, const Task& t) {
  const GemmMicroKernel micro = kernel().micro;
  const int64_t nc = t.j1 - t.j0;
  if (pr.k == 0) {
    if (!pr.accumulate)
      for (int64_t i = t.i0; i < t.i1; ++i) std::fill_n(pr.c + i * pr.ldc + t.j0, nc, 0.0f);
    return;
  }
  thread_local PackBuffer bufA, bufB;
  const int64_t kBlocks = ceilDiv(pr.k, kKC);
  float* packedB = bufB.get(roundUp(nc, kNR) * ceilDiv(pr.k, kBlocks));
  float* packedA = bufA.get(kMC * ceilDiv(pr.k, kBlocks));
  alignas(64) float edge[kMR * kNR];
  for (int64_t kb = 0, p0 = 0; kb < kBlocks; ++kb) {
    const int64_t kc = (pr.k - p0) / (kBlocks - kb);  // near-equal blocks, fixed by K alone
    const bool add = pr.accumulate || kb > 0;
    packB(pr, t.j0, nc, p0, kc, packedB);
    for (int64_t ic = t.i0; ic < t.i1; ic += kMC) {
      const int64_t mc = std::min(kMC, t.i1 - ic);
      packA(pr, ic, mc, p0, kc, packedA);
      for (int64_t jr = 0; jr < nc; jr += kNR) {
        const int64_t nr = std::min(kNR, nc - jr);
        const float* bp = packedB + jr * kc;
        for (int64_t ir = 0; ir < mc; ir += kMR) {
          const int64_t mr = std::min(kMR, mc - ir);
          const float* ap = packedA + ir * kc;
          float* c = pr.c + (ic + ir) * pr.ldc + t.j0 + jr;
          if (mr == kMR && nr == kNR) {
            micro(kc, ap, bp, c, pr.ldc, add);
            continue;
          }
          micro(kc, ap, bp, edge, kNR, false);
          for (int64_t r = 0; r < mr; ++r)
            for (int64_t j = 0; j < nr; ++j)
              c[r * pr.ldc + j] = add ? c[r * pr.ldc + j] + edge[r * kNR + j] : edge[r * kNR + j];
        }
      }
    }
    p0 += kc;
  }
}

void checkProblem(const GemmProblem& pr, int index) {
  const std::string name = "sgemm: problems[" + std::to_string(index) + "].";
  if (pr.m < 0 || pr.n < 0 || pr.k < 0)
    throw Error(ErrorKind::Shape, name + "m, .n and .k must be >= 0, got m = " +
                                      std::to_string(pr.m) + ", n = " + std::to_string(pr.n) +
                                      ", k = " + std::to_string(pr.k));
  const int64_t minLda = pr.layout == GemmLayout::TN ? pr.m : pr.k;
  const int64_t minLdb = pr.layout == GemmLayout::NT ? pr.k : pr.n;
  const auto checkLd = [&](const char* field, int64_t ld, int64_t least) {
    if (ld < least)
      throw Error(ErrorKind::Shape, name + field + " must be >= " + std::to_string(least) +
                                        " for this layout, got " + std::to_string(ld));
  };
  checkLd("lda", pr.lda, minLda);
  checkLd("ldb", pr.ldb, minLdb);
  checkLd("ldc", pr.ldc, pr.n);
  const auto checkPtr = [&](const char* field, const void* p, bool needed) {
    if (needed && !p) throw Error(ErrorKind::Argument, name + field + " must not be null");
  };
  checkPtr("a", pr.a, pr.m > 0 && pr.k > 0);
  checkPtr("b", pr.b, pr.n > 0 && pr.k > 0);
  checkPtr("c", pr.c, pr.m > 0 && pr.n > 0);
  if (pr.aRows && pr.layout == GemmLayout::TN)
    throw Error(ErrorKind::Argument, name + "aRows applies to the NT and NN layouts only");
  if (pr.bRows && pr.layout != GemmLayout::TN)
    throw Error(ErrorKind::Argument, name + "bRows applies to the TN layout only");
}

}  // namespace

void sgemmBatch(const GemmProblem* problems, int count) {
  if (count < 0)
    throw Error(ErrorKind::Argument, "sgemm: count must be >= 0, got " + std::to_string(count));
  if (count > 0 && !problems) throw Error(ErrorKind::Argument, "sgemm: problems must not be null");
  std::vector<double> flops(static_cast<size_t>(count));
  double total = 0;
  for (int q = 0; q < count; ++q) {
    const GemmProblem& pr = problems[q];
    checkProblem(pr, q);
    flops[size_t(q)] = 2.0 * double(pr.m) * double(pr.n) * double(pr.k);
    total += flops[size_t(q)];
  }
  const double target =
      std::max(total / (kTasksPerThread * cpuThreadPool().threads()), kMinTaskFlops);
  // Largest problems first (for balance); a problem's tasks stay together, row block-major, so
  // the strips sharing an A block run close in time while it is still in L3.
  std::vector<int> order(static_cast<size_t>(count));
  for (int q = 0; q < count; ++q) order[size_t(q)] = q;
  std::stable_sort(order.begin(), order.end(),
                   [&](int x, int y) { return flops[size_t(x)] > flops[size_t(y)]; });
  std::vector<Task> tasks;
  for (const int q : order) {
    const GemmProblem& pr = problems[q];
    if (pr.m == 0 || pr.n == 0) continue;
    const int64_t width = roundUp(ceilDiv(pr.n, ceilDiv(pr.n, panelColumns())), kNR);
    const double stripFlops = 2.0 * double(pr.m) * double(width) * double(pr.k);
    const int64_t rowBlocks =
        std::clamp(int64_t(std::ceil(stripFlops / target)), int64_t(1), ceilDiv(pr.m, kMR));
    const int64_t height = roundUp(ceilDiv(pr.m, rowBlocks), kMR);
    for (int64_t i0 = 0; i0 < pr.m; i0 += height)
      for (int64_t j0 = 0; j0 < pr.n; j0 += width)
        tasks.push_back({q, i0, std::min(pr.m, i0 + height), j0, std::min(pr.n, j0 + width)});
  }
  const int64_t grain = total < 2 * kMinTaskFlops ? std::max<int64_t>(1, int64_t(tasks.size())) : 1;
  parallelFor(0, int64_t(tasks.size()), grain, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) runTask(problems[tasks[size_t(t)].problem], tasks[size_t(t)]);
  });
}

void sgemm(const GemmProblem& problem) { sgemmBatch(&problem, 1); }

const char* sgemmKernelName() { return kernel().name; }

}  // namespace moekit::cpu
