// cuda::groupedGemmBf16NN and cuda::groupedGemmBf16TN (native/cuda/grouped_gemm_bf16_backward.cu,
// run on the SIMT emulator with the emulated tensor-core wrappers) against a float64 reference
// written here: bf16 decoded with core/minifloat.h, products and sums in double.
//
// Tolerances. Small-integer data (|values| ≤ 4, old dA / dW values integers ≤ 10): every product,
// partial sum and the accumulate are integers below 2^24, exact in fp32 in any order, so the device
// must equal the rounded reference bit for bit. Random data (uniform in [-1, 1] rounded to bf16):
// products of bf16 are exact in fp32, the K additions of the reduction (K = n_g for NN, rows_g for
// TN) and the one addition of the old value are rounded in an unspecified order, so
// |device − exact| ≤ (K + 2)·2⁻²⁴·(Σ|terms| + |old|) (the fp32 summation bound for K + 1 addends,
// one extra unit of margin).
// Coverage: groups of 0, 1, 63, 64, 65 and 130 rows (tile − 1, tile, tile + 1, several tiles) and
// 300 rows (10 steps of the TN row reduction through the 3-stage pipeline); n_g = 72 and k_g = 136
// leave partial BK steps and partial column tiles; one launch mixes groups of different n_g and
// k_g. Padding rows of dOut and a and their columns past n_g / k_g hold NaN (must never be read);
// dA's padding rows and columns past k_g, and a guard after each dW_g, hold a sentinel they must
// keep. A copy of each layout with one wrong ldmatrix form (BrokenNN, BrokenTN, compiled only here)
// must fail the same comparison.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "core/errors.h"
#include "core/minifloat.h"
#include "cuda/grouped_gemm_bf16_backward.h"
#include "cuda/grouped_gemm_bf16_backward.cuh"
#include "cuda/padded_groups.h"
#include "gemm_test_support.h"
#include "harness.h"

namespace {

using moekit::cuda::Bf16GemmGroup;
namespace bb = moekit::cuda::bf16backward;

constexpr uint16_t kBf16NaN = 0xFFFF;
constexpr float kSentinel = -12345.0f;
constexpr int kGuard = 16;  // sentinel floats after each dW_g

using moekit::test::GroupShape;

// dOut [Mpad, ldDOut], a [Mpad, lda] and w_g [n_g, k_g] as bf16 bits; dA is [Mpad, lda].
struct Problem {
  std::vector<GroupShape> shapes;
  int ldDOut = 0, lda = 0;
  std::vector<int64_t> start;
  std::vector<uint16_t> dOut, a;
  std::vector<std::vector<uint16_t>> w;
  int64_t mPad() const { return start.back(); }
};

// integers: values in [-4, 4]; otherwise uniform in [-1, 1] rounded to bf16.
Problem makeProblem(const std::vector<GroupShape>& shapes, int ldDOut, int lda, bool integers, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto value = [&]() { return moekit::test::bf16TestValue(rng, integers); };
  Problem p;
  p.shapes = shapes;
  p.ldDOut = ldDOut;
  p.lda = lda;
  p.start = moekit::cuda::paddedRowStarts<moekit::cuda::kBf16GemmRowAlign>(moekit::test::groupsOfShapes<Bf16GemmGroup>(shapes));
  p.dOut.assign(size_t(p.mPad()) * ldDOut, kBf16NaN);
  p.a.assign(size_t(p.mPad()) * lda, kBf16NaN);
  for (size_t g = 0; g < shapes.size(); ++g) {
    for (int r = 0; r < shapes[g].rows; ++r) {
      for (int n = 0; n < shapes[g].n; ++n) p.dOut[size_t(p.start[g] + r) * ldDOut + n] = value();
      for (int k = 0; k < shapes[g].k; ++k) p.a[size_t(p.start[g] + r) * lda + k] = value();
    }
    std::vector<uint16_t> w(size_t(shapes[g].n) * shapes[g].k);
    for (uint16_t& x : w) x = value();
    p.w.push_back(w);
  }
  return p;
}

double bf16(uint16_t bits) { return double(moekit::decodeBF16(bits)); }

// What one output buffer must hold: at real elements old + value (or value) within `terms`
// additions of magnitude Σ|terms|; elsewhere the sentinel.
struct Expected {
  std::vector<double> value, magnitude;
  std::vector<int> terms;
  std::vector<bool> real;
  std::vector<std::string> where;
  explicit Expected(size_t size) : value(size), magnitude(size), terms(size), real(size, false), where(size) {}
  void set(size_t at, double v, double m, int k, std::string name) {
    value[at] = v;
    magnitude[at] = m;
    terms[at] = k;
    real[at] = true;
    where[at] = std::move(name);
  }
};

// NN over dA [Mpad, lda].
Expected referenceNN(const Problem& p) {
  Expected e(size_t(p.mPad()) * p.lda);
  for (size_t g = 0; g < p.shapes.size(); ++g) {
    const GroupShape& s = p.shapes[g];
    for (int r = 0; r < s.rows; ++r)
      for (int k = 0; k < s.k; ++k) {
        double sum = 0, magnitude = 0;
        for (int n = 0; n < s.n; ++n) {
          const double term = bf16(p.dOut[size_t(p.start[g] + r) * p.ldDOut + n]) * bf16(p.w[g][size_t(n) * s.k + k]);
          sum += term;
          magnitude += std::fabs(term);
        }
        e.set(size_t(p.start[g] + r) * p.lda + k, sum, magnitude, s.n,
              "dA group " + std::to_string(g) + " row " + std::to_string(r) + " column " + std::to_string(k));
      }
  }
  return e;
}

// Offset of dW_g in the concatenation of the groups' [n_g·k_g + kGuard] buffers.
std::vector<size_t> weightOffsets(const Problem& p) {
  std::vector<size_t> offset{0};
  for (const GroupShape& s : p.shapes) offset.push_back(offset.back() + size_t(s.n) * s.k + kGuard);
  return offset;
}

// TN over the concatenated dW_g buffers.
Expected referenceTN(const Problem& p) {
  const std::vector<size_t> offset = weightOffsets(p);
  Expected e(offset.back());
  for (size_t g = 0; g < p.shapes.size(); ++g) {
    const GroupShape& s = p.shapes[g];
    for (int n = 0; n < s.n; ++n)
      for (int k = 0; k < s.k; ++k) {
        double sum = 0, magnitude = 0;
        for (int r = 0; r < s.rows; ++r) {
          const size_t row = size_t(p.start[g] + r);
          const double term = bf16(p.dOut[row * p.ldDOut + n]) * bf16(p.a[row * p.lda + k]);
          sum += term;
          magnitude += std::fabs(term);
        }
        e.set(offset[g] + size_t(n) * s.k + k, sum, magnitude, s.rows,
              "dW group " + std::to_string(g) + " [" + std::to_string(n) + ", " + std::to_string(k) + "]");
      }
  }
  return e;
}

// The outputs' start: the sentinel, or (accumulate) small integers / uniform [-1, 1] at real elements.
std::vector<float> initialOutput(const Expected& e, bool accumulate, bool integers, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> out(e.value.size(), kSentinel);
  if (!accumulate) return out;
  for (size_t i = 0; i < out.size(); ++i)
    if (e.real[i])
      out[i] = integers ? float(int(rng() % 21) - 10) : std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  return out;
}

bool sameBits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The first mismatch of got against e (exact: bit for bit; otherwise within the summation
// bound), with the number of mismatches; empty when everything matches.
std::string compare(const std::vector<float>& got, const std::vector<float>& before, const Expected& e, bool accumulate,
                    bool exact) {
  std::string first;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    std::string problem;
    if (!e.real[i]) {
      if (!sameBits(got[i], kSentinel)) problem = "index " + std::to_string(i) + " outside the output was written";
    } else {
      const double old = accumulate ? double(before[i]) : 0.0;
      const double want = old + e.value[i];
      const double bound = (e.terms[i] + 2) * std::ldexp(1.0, -24) * (e.magnitude[i] + std::fabs(old));
      const bool ok = exact ? sameBits(got[i], float(want)) : std::fabs(double(got[i]) - want) <= bound;
      if (!ok) {
        problem = e.where[i] + ": got " + std::to_string(got[i]) + ", expected " + std::to_string(want) +
                  (exact ? " exactly" : " within " + std::to_string(bound));
      }
    }
    if (problem.empty()) continue;
    if (bad++ == 0) first = problem;
  }
  return bad == 0 ? std::string() : std::to_string(bad) + " mismatches, first: " + first;
}

// Device copies of a problem.
struct DeviceProblem {
  emutest::DeviceArray<uint16_t> dOut, a;
  std::vector<std::unique_ptr<emutest::DeviceArray<uint16_t>>> w;
  explicit DeviceProblem(const Problem& p) : dOut(p.dOut), a(p.a) {
    for (const std::vector<uint16_t>& wg : p.w) w.push_back(std::make_unique<emutest::DeviceArray<uint16_t>>(wg));
  }
  std::vector<Bf16GemmGroup> groups(const Problem& p) const {
    std::vector<Bf16GemmGroup> groups = moekit::test::groupsOfShapes<Bf16GemmGroup>(p.shapes);
    for (size_t g = 0; g < groups.size(); ++g) groups[g].w = w[g]->get();
    return groups;
  }
};

// Runs NN on dA = before: the shipped entry point, or (Layout not void) the kernel with that layout.
template <class Layout = void>
std::vector<float> runNN(const Problem& p, const std::vector<float>& before, bool accumulate) {
  const DeviceProblem d(p);
  emutest::DeviceArray<float> dA(before);
  if constexpr (std::is_void_v<Layout>) {
    moekit::cuda::groupedGemmBf16NN(d.dOut.get(), p.ldDOut, d.groups(p), dA.get(), p.lda, accumulate, nullptr);
  } else {
    bb::Operands op;
    op.dOut = d.dOut.get();
    op.ldDOut = p.ldDOut;
    op.dA = dA.get();
    op.ldDA = p.lda;
    op.accumulate = accumulate;
    const std::vector<bb::Group> table = bb::kernelGroups(d.groups(p), {});
    bb::launchBackward<Layout>("broken NN", op, table, bb::nnTiles(table, "broken NN"), nullptr);
  }
  return dA.download();
}

// Runs TN on the dW_g buffers (concatenated in `before` and in the result, weightOffsets).
template <class Layout = void>
std::vector<float> runTN(const Problem& p, const std::vector<float>& before, bool accumulate) {
  const DeviceProblem d(p);
  const std::vector<size_t> offset = weightOffsets(p);
  std::vector<std::unique_ptr<emutest::DeviceArray<float>>> dW;
  std::vector<float*> pointers;
  for (size_t g = 0; g < p.shapes.size(); ++g) {
    dW.push_back(std::make_unique<emutest::DeviceArray<float>>(
        std::vector<float>(before.begin() + long(offset[g]), before.begin() + long(offset[g + 1]))));
    pointers.push_back(dW.back()->get());
  }
  if constexpr (std::is_void_v<Layout>) {
    moekit::cuda::groupedGemmBf16TN(d.dOut.get(), p.ldDOut, d.a.get(), p.lda, d.groups(p), pointers, accumulate,
                                    nullptr);
  } else {
    bb::Operands op;
    op.dOut = d.dOut.get();
    op.ldDOut = p.ldDOut;
    op.a = d.a.get();
    op.lda = p.lda;
    op.accumulate = accumulate;
    const std::vector<bb::Group> table = bb::kernelGroups(d.groups(p), pointers);
    bb::launchBackward<Layout>("broken TN", op, table, bb::tnTiles(table, accumulate, "broken TN"), nullptr);
  }
  std::vector<float> out;
  for (const auto& buffer : dW) {
    const std::vector<float> part = buffer->download();
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

const std::vector<GroupShape> kEdgeGroups = {{0, 72, 136}, {1, 72, 136}, {63, 72, 136},
                                             {64, 72, 136}, {65, 72, 136}, {130, 72, 136}};
const std::vector<GroupShape> kHeterogeneous = {{65, 24, 32}, {0, 96, 104}, {63, 136, 96},
                                                {1, 8, 40},   {20, 64, 64}, {300, 16, 8}};

// One case body: every (layout, accumulate) pair on one problem, exact or within the bound.
void checkBoth(const Problem& p, bool integers, bool exact, uint32_t seed) {
  const Expected nn = referenceNN(p), tn = referenceTN(p);
  for (bool accumulate : {false, true}) {
    const std::string mode = accumulate ? " (accumulate)" : " (overwrite)";
    const std::vector<float> beforeNN = initialOutput(nn, accumulate, integers, seed);
    const std::string nnResult = compare(runNN(p, beforeNN, accumulate), beforeNN, nn, accumulate, exact);
    EMU_EXPECT(nnResult.empty(), "NN" + mode + ": " + nnResult);
    const std::vector<float> beforeTN = initialOutput(tn, accumulate, integers, seed + 1);
    const std::string tnResult = compare(runTN(p, beforeTN, accumulate), beforeTN, tn, accumulate, exact);
    EMU_EXPECT(tnResult.empty(), "TN" + mode + ": " + tnResult);
  }
}

EMU_CASE("bf16 backward GEMMs NN and TN: equal the float64 reference bit for bit on small integers, groups of 0, 1, 63, 64, 65, 130 rows") {
  checkBoth(makeProblem(kEdgeGroups, 80, 144, true, 51), true, true, 52);
}

EMU_CASE("bf16 backward GEMMs NN and TN: heterogeneous experts (unequal n_g and k_g) in one launch, bit for bit on small integers") {
  checkBoth(makeProblem(kHeterogeneous, 136, 104, true, 53), true, true, 54);
}

EMU_CASE("bf16 backward GEMMs NN and TN: random bf16 inputs are within (K+2)·2^-24·(Σ|terms| + |old|) of the float64 reference") {
  checkBoth(makeProblem(kEdgeGroups, 80, 144, false, 55), false, false, 56);
  checkBoth(makeProblem(kHeterogeneous, 136, 104, false, 57), false, false, 58);
}

EMU_CASE("bf16 backward GEMMs NN and TN: the result does not depend on the emulator's thread order (pipeline barriers)") {
  const Problem p = makeProblem({{65, 72, 136}, {300, 16, 8}, {1, 40, 96}}, 72, 136, true, 59);
  const Expected nn = referenceNN(p), tn = referenceTN(p);
  const std::vector<float> beforeNN = initialOutput(nn, true, true, 60), beforeTN = initialOutput(tn, true, true, 61);
  for (uint64_t seed : {1u, 2u, 3u, 4u}) {
    moekit::emu::setSeed(seed);
    const std::string nnResult = compare(runNN(p, beforeNN, true), beforeNN, nn, true, true);
    EMU_EXPECT(nnResult.empty(), "NN, seed " + std::to_string(seed) + ": " + nnResult);
    const std::string tnResult = compare(runTN(p, beforeTN, true), beforeTN, tn, true, true);
    EMU_EXPECT(tnResult.empty(), "TN, seed " + std::to_string(seed) + ": " + tnResult);
  }
}

// ---- a deliberately wrong fragment load ---------------------------------------------------------
// NN with w's [n][k] slice read by ldmatrix without .trans: each lane gets B(g, 2t..2t+1) of an
// 8×8 block instead of B(2t..2t+1, g).
struct BrokenNN : bb::NNLayout {
  __device__ static void fragmentB(uint32_t (&b)[4], const uint16_t* stage, int warpCol, int j, int kk) {
    const int lane = int(threadIdx.x) % 32;
    moekit::cuda::ldmatrixX4(b, stage + kSliceA + (kk + lane % 8 + 8 * (lane / 8 % 2)) * bb::kWideRow + warpCol +
                                    16 * j + 8 * (lane / 16));
  }
};

// TN with dOutᵀ's [rows][n] slice read by ldmatrix without .trans.
struct BrokenTN : bb::TNLayout {
  __device__ static void fragmentA(uint32_t (&a)[4], const uint16_t* stage, int warpRow, int i, int kk) {
    const int lane = int(threadIdx.x) % 32;
    moekit::cuda::ldmatrixX4(a, stage + (kk + 8 * (lane / 16) + lane % 8) * bb::kWideRow + warpRow + 16 * i +
                                    8 * (lane / 8 % 2));
  }
};

EMU_CASE("bf16 backward GEMMs: a layout with a missing ldmatrix .trans fails the same comparison (the test can fail)") {
  const Problem p = makeProblem({{65, 72, 136}, {20, 64, 64}}, 72, 136, true, 62);
  const Expected nn = referenceNN(p), tn = referenceTN(p);
  const std::vector<float> beforeNN = initialOutput(nn, false, true, 63), beforeTN = initialOutput(tn, false, true, 64);
  EMU_EXPECT(compare(runNN(p, beforeNN, false), beforeNN, nn, false, true).empty(), "the shipped NN passes");
  EMU_EXPECT(compare(runTN(p, beforeTN, false), beforeTN, tn, false, true).empty(), "the shipped TN passes");
  const std::string nnResult = compare(runNN<BrokenNN>(p, beforeNN, false), beforeNN, nn, false, true);
  std::fprintf(stderr, "broken NN: %s\n", nnResult.c_str());
  EMU_EXPECT(!nnResult.empty(), "NN with w's fragments untransposed must differ from the reference");
  const std::string tnResult = compare(runTN<BrokenTN>(p, beforeTN, false), beforeTN, tn, false, true);
  std::fprintf(stderr, "broken TN: %s\n", tnResult.c_str());
  EMU_EXPECT(!tnResult.empty(), "TN with dOutᵀ's fragments untransposed must differ from the reference");
}

// ---- groups without rows ------------------------------------------------------------------------
EMU_CASE("bf16 backward GEMMs: groups without rows launch nothing and need no operands, except that TN without accumulate zeroes dW_g") {
  const std::vector<Bf16GemmGroup> groups = moekit::test::groupsOfShapes<Bf16GemmGroup>({{0, 64, 64}, {0, 8, 32}});
  moekit::cuda::groupedGemmBf16NN(nullptr, 64, groups, nullptr, 64, false, nullptr);
  moekit::cuda::groupedGemmBf16NN(nullptr, 64, {}, nullptr, 64, true, nullptr);
  moekit::cuda::groupedGemmBf16TN(nullptr, 64, nullptr, 64, groups, {nullptr, nullptr}, true, nullptr);
  emutest::DeviceArray<float> dW0(std::vector<float>(64 * 64, kSentinel)), dW1(std::vector<float>(8 * 32, kSentinel));
  moekit::cuda::groupedGemmBf16TN(nullptr, 64, nullptr, 64, groups, {dW0.get(), dW1.get()}, false, nullptr);
  for (const auto* buffer : {&dW0, &dW1})
    for (float v : buffer->download()) EMU_EXPECT(sameBits(v, 0.0f), "dW_g of a group without rows = +0");
}

// ---- argument checks ----------------------------------------------------------------------------------
using moekit::test::expectError;

EMU_CASE("bf16 backward GEMMs: invalid arguments throw moekit::Error naming the argument before any launch") {
  const Problem p = makeProblem({{3, 16, 32}, {2, 8, 32}}, 16, 32, true, 71);
  const DeviceProblem d(p);
  emutest::DeviceArray<float> dA(size_t(p.mPad()) * 32), dW0(16 * 32), dW1(8 * 32);
  const std::vector<float*> dW = {dW0.get(), dW1.get()};
  const auto groups = [&](const std::function<void(std::vector<Bf16GemmGroup>&)>& edit) {
    std::vector<Bf16GemmGroup> g = d.groups(p);
    edit(g);
    return g;
  };
  using moekit::ErrorKind;
  using moekit::cuda::groupedGemmBf16NN;
  using moekit::cuda::groupedGemmBf16TN;
  expectError(ErrorKind::Shape, {"groupedGemmBf16NN: ldDOut", "positive multiple of 8", "got 20"},
              [&] { groupedGemmBf16NN(d.dOut.get(), 20, d.groups(p), dA.get(), 32, false, nullptr); });
  expectError(ErrorKind::Shape, {"groupedGemmBf16NN: ldDA", "≥ 1", "got 0"},
              [&] { groupedGemmBf16NN(d.dOut.get(), 16, d.groups(p), dA.get(), 0, false, nullptr); });
  expectError(ErrorKind::Shape, {"groupedGemmBf16NN: groups[1].k", "at most ldDA = 32", "got 12"}, [&] {
    groupedGemmBf16NN(d.dOut.get(), 16, groups([](auto& g) { g[1].k = 12; }), dA.get(), 32, false, nullptr);
  });
  expectError(ErrorKind::Shape, {"groupedGemmBf16NN: groups[0].k", "at most ldDA = 24", "got 32"},
              [&] { groupedGemmBf16NN(d.dOut.get(), 16, d.groups(p), dA.get(), 24, false, nullptr); });
  expectError(ErrorKind::Shape, {"groupedGemmBf16NN: groups[0].n", "multiple of 8", "ldDOut = 16", "got 12"}, [&] {
    groupedGemmBf16NN(d.dOut.get(), 16, groups([](auto& g) { g[0].n = 12; }), dA.get(), 32, false, nullptr);
  });
  expectError(ErrorKind::Shape, {"groupedGemmBf16NN: groups[0].n", "got 24"}, [&] {
    groupedGemmBf16NN(d.dOut.get(), 16, groups([](auto& g) { g[0].n = 24; }), dA.get(), 32, false, nullptr);
  });
  expectError(ErrorKind::Shape, {"groupedGemmBf16NN: groups[1].rows", "≥ 0", "got -1"}, [&] {
    groupedGemmBf16NN(d.dOut.get(), 16, groups([](auto& g) { g[1].rows = -1; }), dA.get(), 32, false, nullptr);
  });
  expectError(ErrorKind::Argument, {"groupedGemmBf16NN: groups[1].w:", "16-byte aligned", "null"}, [&] {
    groupedGemmBf16NN(d.dOut.get(), 16, groups([](auto& g) { g[1].w = nullptr; }), dA.get(), 32, false, nullptr);
  });
  expectError(ErrorKind::Argument, {"groupedGemmBf16NN: groups[0].w:", "2 bytes past a 16-byte boundary"}, [&] {
    groupedGemmBf16NN(d.dOut.get(), 16, groups([&](auto& g) { g[0].w = d.w[0]->get() + 1; }), dA.get(), 32, false,
                      nullptr);
  });
  expectError(ErrorKind::Argument, {"groupedGemmBf16NN: dOut:", "8 bytes past a 16-byte boundary"},
              [&] { groupedGemmBf16NN(d.dOut.get() + 4, 16, d.groups(p), dA.get(), 32, false, nullptr); });
  expectError(ErrorKind::Argument, {"groupedGemmBf16NN: dA", "null"},
              [&] { groupedGemmBf16NN(d.dOut.get(), 16, d.groups(p), nullptr, 32, true, nullptr); });

  expectError(ErrorKind::Shape, {"groupedGemmBf16TN: lda", "positive multiple of 8", "got 36"},
              [&] { groupedGemmBf16TN(d.dOut.get(), 16, d.a.get(), 36, d.groups(p), dW, false, nullptr); });
  expectError(ErrorKind::Shape, {"groupedGemmBf16TN: ldDOut", "got -8"},
              [&] { groupedGemmBf16TN(d.dOut.get(), -8, d.a.get(), 32, d.groups(p), dW, false, nullptr); });
  expectError(ErrorKind::Shape, {"groupedGemmBf16TN: groups[0].k", "at most lda = 32", "got 40"}, [&] {
    groupedGemmBf16TN(d.dOut.get(), 16, d.a.get(), 32, groups([](auto& g) { g[0].k = 40; }), dW, false, nullptr);
  });
  expectError(ErrorKind::Shape, {"groupedGemmBf16TN: dW", "one pointer per group (2)", "got 1"},
              [&] { groupedGemmBf16TN(d.dOut.get(), 16, d.a.get(), 32, d.groups(p), {dW0.get()}, false, nullptr); });
  expectError(ErrorKind::Argument, {"groupedGemmBf16TN: dW[1]", "null"}, [&] {
    groupedGemmBf16TN(d.dOut.get(), 16, d.a.get(), 32, d.groups(p), {dW0.get(), nullptr}, true, nullptr);
  });
  expectError(ErrorKind::Argument, {"groupedGemmBf16TN: a:", "4 bytes past a 16-byte boundary"},
              [&] { groupedGemmBf16TN(d.dOut.get(), 16, d.a.get() + 2, 32, d.groups(p), dW, false, nullptr); });
  expectError(ErrorKind::Argument, {"groupedGemmBf16TN: dOut:", "null"},
              [&] { groupedGemmBf16TN(nullptr, 16, d.a.get(), 32, d.groups(p), dW, false, nullptr); });
}

}  // namespace
