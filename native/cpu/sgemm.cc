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
// rows into as many equal blocks as needed, rounded up so that a problem's task count is a
// multiple of the thread count where the rows allow (a 2048³ GEMM on 2 threads: 12 tasks, not 9,
// 1.35× faster). The split never touches K: it changes speed, never bits.
//
// Row maps (sgemm.h): gathered or scaled rows of A are copied next to each other in L1 and packed
// from there.
// Scatter (cRows): the scattering problems of a batch are cut into column strips that span all of
// them, one task per strip. A strip task walks the problems in batch order and their rows in
// order, in blocks of rows whose C lives in a thread-local scratch (at most 4 MiB), and adds each
// finished micro tile, row by row, into the rows of c. So every element of c receives its rows in
// problem order, then row order, on one thread: fixed whatever the thread count or strip width.
// The strip count follows the thread count (kScatterStripsPerThread each, strips no wider than NC
// nor narrower than 64 columns): each strip re-packs all of A, which is what the combine costs,
// and also why its parallelism stops at N/64 threads.
#include "sgemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
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
constexpr int kScatterStripsPerThread = 1;
constexpr int64_t kScatterMinColumns = 4 * kNR;  // narrower strips re-pack A for too few flops
constexpr int64_t kScatterScratch = int64_t(1) << 20;  // floats of a strip task's C block

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

// AVX2+FMA when the CPU has both, unless MOEKIT_SGEMM says otherwise (sgemm.h).
KernelChoice chooseKernel() {
  const KernelChoice portable{gemmMicroKernelPortable, packKContiguousPortable<kMR>,
                              packKContiguousPortable<kNR>, "portable"};
  const char* env = std::getenv("MOEKIT_SGEMM");
  const std::string wanted = env ? env : "";
  if (!wanted.empty() && wanted != "avx2" && wanted != "portable")
    throw Error(ErrorKind::Argument,
                "MOEKIT_SGEMM must be 'avx2' or 'portable' (or unset), got '" + wanted + "'");
  if (wanted == "portable") return portable;
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {gemmMicroKernelAvx2, gemmPackKContiguousAvx2MR, gemmPackKContiguousAvx2NR, "avx2+fma"};
#endif
  if (wanted == "avx2")
    throw Error(ErrorKind::Argument, "MOEKIT_SGEMM: expected a CPU with AVX2 and FMA for 'avx2', "
                                     "this one lacks them");
  return portable;
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

// One sliver from an operand stored lane-major (each lane a stored row, contiguous along k: A of
// NT/NN, B of NT): out[p·W + l] = src[l·rowStride + p] for l < lanes, 0 for lanes <= l < W.
// W = MR packs A slivers, W = NR packs B slivers. Full slivers go to the ISA's transposing pack,
// edge slivers are zero-padded.
template <int64_t W>
void packSliver(const float* src, int64_t rowStride, int64_t lanes, int64_t kc, float* out) {
  if (lanes == W) {
    (W == kMR ? kernel().packA : kernel().packB)(src, rowStride, kc, out);
    return;
  }
  for (int64_t p = 0; p < kc; ++p, out += W)
    for (int64_t l = 0; l < W; ++l) out[l] = l < lanes ? src[l * rowStride + p] : 0.0f;
}

// Slivers from an operand stored step-major (K step p is a stored row, its values side by side:
// A of TN, B of NN and TN), columns [col0, col0 + width), as ⌈width/W⌉ slivers of kc × W with
// the last zero-padded: out[s·kc + p·W + l] = scale_p · row_p[col0 + s + l].
//
// packStepSlivers: row_p = base + (p0 + p)·ld, no scale; a sliver at a time, each reading one
// line-sized piece of every row (the stride is regular: the hardware prefetcher follows it).
template <int64_t W>
void packStepSlivers(const float* base, int64_t ld, int64_t p0, int64_t col0, int64_t width, int64_t kc,
                     float* out) {
  for (int64_t s = 0; s < width; s += W, out += kc * W) {
    const float* src = base + p0 * ld + col0 + s;
    if (s + W <= width) {
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t l = 0; l < W; ++l) out[p * W + l] = src[p * ld + l];
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int64_t l = 0; l < W; ++l) out[p * W + l] = s + l < width ? src[p * ld + l] : 0.0f;
    }
  }
}

// packStepRows: row_p = base + rows[p0 + p]·ld (gathered: the permute's row map; p0 + p when
// null), times scales[p0 + p] (1 when null). Steps outer, slivers inner: every gathered row is read once,
// front to back, where a sliver at a time would come back to each of kc scattered rows
// ⌈width/W⌉ times (measured: 1.15× faster on the fine-grained dW GEMMs, unchanged on
// mixtral-like; on unmapped operands the sliver order above is the faster one).
template <int64_t W>
void packStepRows(const float* base, int64_t ld, const int32_t* rows, const float* scales, int64_t p0,
                  int64_t col0, int64_t width, int64_t kc, float* out) {
  for (int64_t p = 0; p < kc; ++p) {
    const float* row = base + (rows ? int64_t(rows[p0 + p]) : p0 + p) * ld + col0;
    const float w = scales ? scales[p0 + p] : 1.0f;
    int64_t s = 0;
    for (; s + W <= width; s += W) {
      float* o = out + s * kc + p * W;
      if (scales)
        for (int64_t l = 0; l < W; ++l) o[l] = w * row[s + l];
      else
        for (int64_t l = 0; l < W; ++l) o[l] = row[s + l];
    }
    if (s < width) {
      float* o = out + s * kc + p * W;
      for (int64_t l = 0; l < W; ++l) o[l] = s + l < width ? w * row[s + l] : 0.0f;
    }
  }
}

// Packs A rows [i0, i0+mc) × K steps [p0, p0+kc) into ⌈mc/MR⌉ slivers of kc × MR.
void packA(const GemmProblem& pr, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* out) {
  if (pr.layout == GemmLayout::TN) {  // A(i,p) = a[p·lda + i]: step p is a stored row
    if (pr.aRows || pr.aScale)
      packStepRows<kMR>(pr.a, pr.lda, pr.aRows, pr.aScale, p0, i0, mc, kc, out);
    else
      packStepSlivers<kMR>(pr.a, pr.lda, p0, i0, mc, kc, out);
    return;
  }
  // NT/NN: A(i,p) = a[i·lda + p], row i is stored row aRows[i] (i without a map).
  const bool mapped = pr.aRows || pr.aScale;
  const auto stored = [&](int64_t s) {
    return pr.a + (pr.aRows ? int64_t(pr.aRows[s]) : s) * pr.lda;
  };
  const auto scale = [&](int64_t s) { return pr.aScale ? pr.aScale[s] : 1.0f; };
  for (int64_t s = 0; s < mc; s += kMR, out += kc * kMR) {
    const int64_t lanes = std::min(kMR, mc - s);
    if (!mapped) {
      packSliver<kMR>(pr.a + (i0 + s) * pr.lda + p0, pr.lda, lanes, kc, out);
    } else {  // gathered rows: copy them next to each other (in L1), then pack as contiguous rows
      alignas(64) float rows[kMR * kKC];
      for (int64_t l = 0; l < lanes; ++l) {
        const float* row = stored(i0 + s + l) + p0;
        const float w = scale(i0 + s + l);
        float* dst = rows + l * kc;
        if (pr.aScale)
          for (int64_t p = 0; p < kc; ++p) dst[p] = w * row[p];
        else
          std::copy_n(row, kc, dst);
      }
      packSliver<kMR>(rows, kc, lanes, kc, out);
    }
  }
}

// Packs B K steps [p0, p0+kc) × columns [j0, j0+nc) into ⌈nc/NR⌉ slivers of kc × NR.
void packB(const GemmProblem& pr, int64_t j0, int64_t nc, int64_t p0, int64_t kc, float* out) {
  if (pr.layout != GemmLayout::NT) {  // B(p,j) = b[p·ldb + j]: step p is a stored row
    if (pr.bRows)
      packStepRows<kNR>(pr.b, pr.ldb, pr.bRows, nullptr, p0, j0, nc, kc, out);
    else
      packStepSlivers<kNR>(pr.b, pr.ldb, p0, j0, nc, kc, out);
    return;
  }
  for (int64_t s = 0; s < nc; s += kNR, out += kc * kNR)  // NT: B(p,j) = b[j·ldb + p]
    packSliver<kNR>(pr.b + (j0 + s) * pr.ldb + p0, pr.ldb, std::min(kNR, nc - s), kc, out);
}

// The packing buffers and the scatter scratch of the calling thread.
struct Scratch {
  PackBuffer a, b, c;
};
thread_local Scratch tScratch;

// Runs the K blocks of rows [i0, i1) × columns [j0, j1) of pr (j1 − j0 at most a panel, K >= 1):
// per K block packs B, then per MC rows packs A and calls
//   tile(kc, a, b, i, j, rows, cols, first, last)
// for every MR × NR micro tile: a and b are the packed slivers, (i, j) the tile's origin in the
// problem, rows × cols its part inside the block, first / last whether this is the first / last
// K block. B slivers are outermost (so one stays in L1), tiles in row order within each.
template <class Tile>
void forEachMicroTile(const GemmProblem& pr, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                      const Tile& tile) {
  const int64_t nc = j1 - j0;
  const int64_t kBlocks = ceilDiv(pr.k, kKC);
  const int64_t kcMax = ceilDiv(pr.k, kBlocks);
  float* packedB = tScratch.b.get(roundUp(nc, kNR) * kcMax);
  float* packedA = tScratch.a.get(kMC * kcMax);
  for (int64_t kb = 0, p0 = 0; kb < kBlocks; ++kb) {
    const int64_t kc = (pr.k - p0) / (kBlocks - kb);  // near-equal blocks, fixed by K alone
    packB(pr, j0, nc, p0, kc, packedB);
    for (int64_t ic = i0; ic < i1; ic += kMC) {
      const int64_t mc = std::min(kMC, i1 - ic);
      packA(pr, ic, mc, p0, kc, packedA);
      for (int64_t jr = 0; jr < nc; jr += kNR)
        for (int64_t ir = 0; ir < mc; ir += kMR)
          tile(kc, packedA + ir * kc, packedB + jr * kc, ic + ir, j0 + jr, std::min(kMR, mc - ir),
               std::min(kNR, nc - jr), kb == 0, kb == kBlocks - 1);
    }
    p0 += kc;
  }
}

// c[r·ldc + j] (+)= the micro-kernel's tile, for r < rows, j < cols; tiles cut by the matrix edge
// go through a full scratch tile so they round exactly like full ones.
void storeTile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t rows,
               int64_t cols, bool add) {
  const GemmMicroKernel micro = kernel().micro;
  if (rows == kMR && cols == kNR) {
    micro(kc, a, b, c, ldc, add);
    return;
  }
  alignas(64) float edge[kMR * kNR];
  micro(kc, a, b, edge, kNR, false);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j)
      c[r * ldc + j] = add ? c[r * ldc + j] + edge[r * kNR + j] : edge[r * kNR + j];
}

// A task: the C tile rows [i0, i1) × columns [j0, j1) of one problem, j1 − j0 <= NC; or, with
// problem = kScatterStrip: columns [j0, j1) of every scattering problem (runScatterStrip).
constexpr int kScatterStrip = -1;
struct Task {
  int problem;
  int64_t i0, i1, j0, j1;
};

// The task of a problem that stores C itself.
void runTask(const GemmProblem& pr, const Task& t) {
  if (pr.k == 0) {
    if (!pr.accumulate)
      for (int64_t i = t.i0; i < t.i1; ++i)
        std::fill_n(pr.c + i * pr.ldc + t.j0, t.j1 - t.j0, 0.0f);
    return;
  }
  forEachMicroTile(pr, t.i0, t.i1, t.j0, t.j1,
                   [&](int64_t kc, const float* a, const float* b, int64_t i, int64_t j,
                       int64_t rows, int64_t cols, bool first, bool) {
                     storeTile(kc, a, b, pr.c + i * pr.ldc + j, pr.ldc, rows, cols,
                               pr.accumulate || !first);
                   });
}

// Columns [j0, j1) of every scattering problem (scatter, in batch order): per problem, blocks of
// rows in order, their C in the scratch (full micro tiles, so no edge handling), each finished
// micro tile added row by row into c (the order sgemm.h promises).
void runScatterStrip(const GemmProblem* problems, const std::vector<int>& scatter, int64_t j0,
                     int64_t j1) {
  const GemmMicroKernel micro = kernel().micro;
  for (const int q : scatter) {
    const GemmProblem& pr = problems[q];
    if (pr.m == 0 || pr.k == 0 || j0 >= pr.n) continue;
    const int64_t jEnd = std::min(j1, pr.n), ld = roundUp(jEnd - j0, kNR);
    const int64_t maxRows = std::max(kMC, kScatterScratch / ld / kMC * kMC);
    const int64_t blocks = ceilDiv(pr.m, maxRows);
    const int64_t height = roundUp(ceilDiv(pr.m, blocks), kMR);
    float* scratch = tScratch.c.get(height * ld);
    for (int64_t i0 = 0; i0 < pr.m; i0 += height)
      forEachMicroTile(pr, i0, std::min(pr.m, i0 + height), j0, jEnd,
                       [&](int64_t kc, const float* a, const float* b, int64_t i, int64_t j,
                           int64_t rows, int64_t cols, bool first, bool last) {
                         float* s = scratch + (i - i0) * ld + (j - j0);
                         micro(kc, a, b, s, ld, !first);
                         if (!last) return;
                         for (int64_t r = 0; r < rows; ++r) {
                           const float w = pr.cScale ? pr.cScale[i + r] : 1.0f;
                           const float* src = s + r * ld;
                           float* dst = pr.c + int64_t(pr.cRows[i + r]) * pr.ldc + j;
                           for (int64_t c = 0; c < cols; ++c) dst[c] += w * src[c];
                         }
                       });
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
  if (pr.bRows && pr.layout != GemmLayout::TN)
    throw Error(ErrorKind::Argument, name + "bRows applies to the TN layout only");
  if (pr.cScale && !pr.cRows)
    throw Error(ErrorKind::Argument, name + "cScale needs cRows");
  if (pr.cRows && !pr.accumulate)
    throw Error(ErrorKind::Argument, name + "cRows needs accumulate = true");
}

}  // namespace

void sgemmBatch(const GemmProblem* problems, int count) {
  if (count < 0)
    throw Error(ErrorKind::Argument, "sgemm: count must be >= 0, got " + std::to_string(count));
  if (count > 0 && !problems) throw Error(ErrorKind::Argument, "sgemm: problems must not be null");
  std::vector<double> flops(static_cast<size_t>(count));
  double total = 0, scatterFlops = 0;
  int64_t scatterColumns = 0;
  std::vector<int> scatter;  // the scattering problems, in batch order
  for (int q = 0; q < count; ++q) {
    const GemmProblem& pr = problems[q];
    checkProblem(pr, q);
    flops[size_t(q)] = 2.0 * double(pr.m) * double(pr.n) * double(pr.k);
    total += flops[size_t(q)];
    if (pr.cRows) {
      scatter.push_back(q);
      scatterFlops += flops[size_t(q)];
      scatterColumns = std::max(scatterColumns, pr.n);
    }
  }
  const int threads = cpuThreadPool().threads();
  const double target = std::max(total / (kTasksPerThread * threads), kMinTaskFlops);
  std::vector<Task> tasks;
  if (scatterColumns > 0) {  // strips first: they are the largest tasks
    const int64_t fewest = ceilDiv(scatterColumns, panelColumns());
    const int64_t strips = std::clamp<int64_t>(
        std::min<int64_t>(int64_t(kScatterStripsPerThread) * threads,
                          std::max<int64_t>(1, int64_t(scatterFlops / kMinTaskFlops))),
        fewest, std::max(fewest, ceilDiv(scatterColumns, kScatterMinColumns)));
    const int64_t width = roundUp(ceilDiv(scatterColumns, strips), kNR);
    for (int64_t j0 = 0; j0 < scatterColumns; j0 += width)
      tasks.push_back({kScatterStrip, 0, 0, j0, std::min(scatterColumns, j0 + width)});
  }
  // Largest problems first (for balance); a problem's tasks stay together, row block-major, so
  // the strips sharing an A block run close in time while it is still in L3.
  std::vector<int> order;
  for (int q = 0; q < count; ++q)
    if (!problems[q].cRows) order.push_back(q);
  std::stable_sort(order.begin(), order.end(),
                   [&](int x, int y) { return flops[size_t(x)] > flops[size_t(y)]; });
  for (const int q : order) {
    const GemmProblem& pr = problems[q];
    if (pr.m == 0 || pr.n == 0) continue;
    const int64_t width = roundUp(ceilDiv(pr.n, ceilDiv(pr.n, panelColumns())), kNR);
    const double stripFlops = 2.0 * double(pr.m) * double(width) * double(pr.k);
    const int64_t strips = ceilDiv(pr.n, width), maxBlocks = ceilDiv(pr.m, kMR);
    int64_t rowBlocks = std::clamp(int64_t(std::ceil(stripFlops / target)), int64_t(1), maxBlocks);
    // Equal tasks in a multiple of the thread count, so no thread waits on a last odd one.
    for (int64_t more = rowBlocks; more <= std::min(maxBlocks, rowBlocks + threads); ++more)
      if ((more * strips) % threads == 0) {
        rowBlocks = more;
        break;
      }
    const int64_t height = roundUp(ceilDiv(pr.m, rowBlocks), kMR);
    for (int64_t i0 = 0; i0 < pr.m; i0 += height)
      for (int64_t j0 = 0; j0 < pr.n; j0 += width)
        tasks.push_back({q, i0, std::min(pr.m, i0 + height), j0, std::min(pr.n, j0 + width)});
  }
  const int64_t grain = total < 2 * kMinTaskFlops ? std::max<int64_t>(1, int64_t(tasks.size())) : 1;
  parallelFor(0, int64_t(tasks.size()), grain, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const Task& task = tasks[size_t(t)];
      if (task.problem == kScatterStrip)
        runScatterStrip(problems, scatter, task.j0, task.j1);
      else
        runTask(problems[task.problem], task);
    }
  });
}

void sgemm(const GemmProblem& problem) { sgemmBatch(&problem, 1); }

const char* sgemmKernelName() { return kernel().name; }

}  // namespace moekit::cpu
