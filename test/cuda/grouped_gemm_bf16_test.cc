// cuda::groupedGemmBf16 and its swiglu epilogue (native/cuda/grouped_gemm_bf16.cu,
// run on the SIMT emulator with the emulated tensor-core wrappers) against a float64 reference
// written here: bf16 decoded with core/minifloat.h, products and sums in double.
//
// Tolerances. Small-integer data (|values| ≤ 4, weights powers of two): every product and partial
// sum is an integer below 2^24, exact in fp32 in any order, so the device must equal the rounded
// reference bit for bit. Random data: products of bf16 are exact in fp32 and the k_g additions are
// rounded in an unspecified order, so |device − exact| ≤ (k_g + 1)·2⁻²⁴·Σ_k|a·w| (the standard
// bound for fp32 summation, with one extra unit for margin).
// Group sizes cover 0, 1, 63, 64, 65 and 130 rows (tile − 1, tile, tile + 1, several tiles), one
// launch mixes groups of different n_g and k_g, and k_g up to 160 runs 5 BK steps through the
// 3-stage pipeline. Padding rows of a and the columns past k_g hold NaN (must never be read) and
// out starts as a sentinel that padding rows and columns past n_g must keep.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/activation.h"
#include "core/errors.h"
#include "core/minifloat.h"
#include "cuda/grouped_gemm_bf16.h"
#include "gemm_test_support.h"
#include "harness.h"

namespace {

using moekit::cuda::Bf16GemmGroup;

constexpr uint16_t kBf16NaN = 0xFFFF;
constexpr float kSentinel = -12345.0f;

using moekit::test::GroupShape;

// A problem on the host: a [Mpad, lda] and w_g (w3_g) [n_g, k_g] as bf16 bits.
struct Problem {
  std::vector<GroupShape> shapes;
  int lda = 0, ldOut = 0;
  std::vector<int64_t> start;
  std::vector<uint16_t> a;
  std::vector<std::vector<uint16_t>> w, w3;
  int64_t mPad() const { return start.back(); }
};

// integers: values in [-4, 4]; otherwise uniform in [-1, 1] rounded to bf16.
Problem makeProblem(const std::vector<GroupShape>& shapes, int lda, int ldOut, bool integers, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto value = [&]() { return moekit::test::bf16TestValue(rng, integers); };
  Problem p;
  p.shapes = shapes;
  p.lda = lda;
  p.ldOut = ldOut;
  p.start = moekit::cuda::bf16GemmRowStarts(moekit::test::groupsOfShapes<Bf16GemmGroup>(shapes));
  p.a.assign(size_t(p.mPad()) * lda, kBf16NaN);
  for (size_t g = 0; g < shapes.size(); ++g) {
    for (int r = 0; r < shapes[g].rows; ++r)
      for (int k = 0; k < shapes[g].k; ++k) p.a[size_t(p.start[g] + r) * lda + k] = value();
    std::vector<uint16_t> w(size_t(shapes[g].n) * shapes[g].k), w3(w.size());
    for (uint16_t& x : w) x = value();
    for (uint16_t& x : w3) x = value();
    p.w.push_back(w);
    p.w3.push_back(w3);
  }
  return p;
}

// The product of one weight set (w or w3) in double, [Mpad, ldOut]; magnitude = Σ_k |a·w|.
struct Product {
  std::vector<double> value, magnitude;
};

Product reference(const Problem& p, const std::vector<std::vector<uint16_t>>& w) {
  Product out{std::vector<double>(size_t(p.mPad()) * p.ldOut, 0.0), std::vector<double>(size_t(p.mPad()) * p.ldOut, 0.0)};
  for (size_t g = 0; g < p.shapes.size(); ++g) {
    const GroupShape& s = p.shapes[g];
    for (int r = 0; r < s.rows; ++r)
      for (int n = 0; n < s.n; ++n) {
        double sum = 0, magnitude = 0;
        for (int k = 0; k < s.k; ++k) {
          const double term = double(moekit::decodeBF16(p.a[size_t(p.start[g] + r) * p.lda + k])) *
                              double(moekit::decodeBF16(w[g][size_t(n) * s.k + k]));
          sum += term;
          magnitude += std::fabs(term);
        }
        out.value[size_t(p.start[g] + r) * p.ldOut + n] = sum;
        out.magnitude[size_t(p.start[g] + r) * p.ldOut + n] = magnitude;
      }
  }
  return out;
}

// Device copies of a problem; groups() points the descriptors at them.
struct DeviceProblem {
  emutest::DeviceArray<uint16_t> a;
  std::vector<std::unique_ptr<emutest::DeviceArray<uint16_t>>> w, w3;
  explicit DeviceProblem(const Problem& p) : a(p.a) {
    for (size_t g = 0; g < p.shapes.size(); ++g) {
      w.push_back(std::make_unique<emutest::DeviceArray<uint16_t>>(p.w[g]));
      w3.push_back(std::make_unique<emutest::DeviceArray<uint16_t>>(p.w3[g]));
    }
  }
  std::vector<Bf16GemmGroup> groups(const Problem& p) const {
    std::vector<Bf16GemmGroup> groups = moekit::test::groupsOfShapes<Bf16GemmGroup>(p.shapes);
    for (size_t g = 0; g < groups.size(); ++g) {
      groups[g].w = w[g]->get();
      groups[g].w3 = w3[g]->get();
    }
    return groups;
  }
};

bool sameBits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Every element of an [Mpad, ldOut] output: real (row, n < n_g) ones pass check(index), the others
// still hold the sentinel.
void checkOutput(const Problem& p, const std::vector<float>& got, const char* what,
                 const std::function<void(size_t, const std::string&)>& check) {
  std::vector<bool> real(got.size(), false);
  for (size_t g = 0; g < p.shapes.size(); ++g)
    for (int r = 0; r < p.shapes[g].rows; ++r)
      for (int n = 0; n < p.shapes[g].n; ++n) {
        const size_t at = size_t(p.start[g] + r) * p.ldOut + n;
        real[at] = true;
        check(at, std::string(what) + " group " + std::to_string(g) + " row " + std::to_string(r) + " column " +
                      std::to_string(n));
      }
  for (size_t i = 0; i < got.size(); ++i) {
    EMU_EXPECT(real[i] || sameBits(got[i], kSentinel),
               std::string(what) + ": padding row or column past n_g at index " + std::to_string(i) + " was written");
  }
}

void expectExact(const std::vector<float>& got, const Product& expected, size_t at, const std::string& where) {
  EMU_EXPECT(sameBits(got[at], float(expected.value[at])),
             where + ": got " + std::to_string(got[at]) + ", expected " + std::to_string(expected.value[at]));
}

void expectClose(const std::vector<float>& got, const Product& expected, int k, size_t at, const std::string& where) {
  const double bound = (k + 1) * std::ldexp(1.0, -24) * expected.magnitude[at];
  EMU_EXPECT(std::fabs(double(got[at]) - expected.value[at]) <= bound,
             where + ": got " + std::to_string(got[at]) + ", expected " + std::to_string(expected.value[at]) +
                 " within " + std::to_string(bound));
}

int groupOfIndex(const Problem& p, size_t at) {
  const int64_t row = int64_t(at) / p.ldOut;
  for (size_t g = 0; g < p.shapes.size(); ++g)
    if (row < p.start[g + 1]) return int(g);
  return -1;
}

// Runs groupedGemmBf16 and returns out [Mpad, ldOut].
std::vector<float> runStore(const Problem& p) {
  const DeviceProblem d(p);
  emutest::DeviceArray<float> out(std::vector<float>(size_t(p.mPad()) * p.ldOut, kSentinel));
  moekit::cuda::groupedGemmBf16(d.a.get(), p.lda, d.groups(p), out.get(), p.ldOut, nullptr);
  return out.download();
}

const std::vector<GroupShape> kEdgeGroups = {{0, 72, 160}, {1, 72, 160}, {63, 72, 160},
                                             {65, 72, 160}, {64, 72, 160}, {130, 72, 160}};
const std::vector<GroupShape> kHeterogeneous = {{65, 24, 32}, {0, 100, 96}, {63, 130, 96}, {1, 8, 40}, {20, 64, 64}};

EMU_CASE("bf16 grouped GEMM: equals the float64 reference bit for bit on small integers, groups of 0, 1, 63, 65, 64, 130 rows") {
  const Problem p = makeProblem(kEdgeGroups, 160, 80, true, 11);
  const std::vector<float> got = runStore(p);
  const Product expected = reference(p, p.w);
  checkOutput(p, got, "out", [&](size_t at, const std::string& where) { expectExact(got, expected, at, where); });
}

EMU_CASE("bf16 grouped GEMM: heterogeneous experts (unequal n_g and k_g) in one launch, bit for bit on small integers") {
  const Problem p = makeProblem(kHeterogeneous, 104, 136, true, 12);
  const std::vector<float> got = runStore(p);
  const Product expected = reference(p, p.w);
  checkOutput(p, got, "out", [&](size_t at, const std::string& where) { expectExact(got, expected, at, where); });
}

EMU_CASE("bf16 grouped GEMM: random bf16 inputs are within (k+1)·2^-24·Σ|a·w| of the float64 reference") {
  for (const auto& shapes : {kEdgeGroups, kHeterogeneous}) {
    const Problem p = makeProblem(shapes, 160, 136, false, 13);
    const std::vector<float> got = runStore(p);
    const Product expected = reference(p, p.w);
    checkOutput(p, got, "out", [&](size_t at, const std::string& where) {
      expectClose(got, expected, p.shapes[size_t(groupOfIndex(p, at))].k, at, where);
    });
  }
}

EMU_CASE("bf16 grouped GEMM: the result does not depend on the emulator's thread order (pipeline barriers)") {
  const Problem p = makeProblem({{65, 72, 160}, {1, 40, 96}}, 160, 72, true, 14);
  const Product expected = reference(p, p.w);
  for (uint64_t seed : {1u, 2u, 3u, 4u}) {
    moekit::emu::setSeed(seed);
    const std::vector<float> got = runStore(p);
    checkOutput(p, got, "out", [&](size_t at, const std::string& where) {
      expectExact(got, expected, at, where + " (seed " + std::to_string(seed) + ")");
    });
  }
}

EMU_CASE("bf16 grouped GEMM: groups without rows launch nothing and need no pointers") {
  const std::vector<Bf16GemmGroup> groups = moekit::test::groupsOfShapes<Bf16GemmGroup>({{0, 64, 64}, {0, 8, 32}});
  moekit::cuda::groupedGemmBf16(nullptr, 64, groups, nullptr, 64, nullptr);
  moekit::cuda::groupedGemmBf16(nullptr, 64, {}, nullptr, 64, nullptr);
  moekit::cuda::groupedGemmBf16Swiglu(nullptr, 64, groups, nullptr, nullptr, nullptr, 64, nullptr);
}

// ---- swiglu epilogue ------------------------------------------------------------------------------
struct SwigluResult {
  std::vector<float> h, a1, a3;
};

SwigluResult runSwiglu(const Problem& p, bool storePreActivations) {
  const DeviceProblem d(p);
  const std::vector<float> fill(size_t(p.mPad()) * p.ldOut, kSentinel);
  emutest::DeviceArray<float> h(fill), a1(fill), a3(fill);
  moekit::cuda::groupedGemmBf16Swiglu(d.a.get(), p.lda, d.groups(p), h.get(), storePreActivations ? a1.get() : nullptr,
                                      storePreActivations ? a3.get() : nullptr, p.ldOut, nullptr);
  return {h.download(), a1.download(), a3.download()};
}

EMU_CASE("bf16 grouped GEMM swiglu epilogue: a1, a3 bit for bit on small integers and h = swiglu(a1, a3) (core/activation.h)") {
  const Problem p = makeProblem({{1, 72, 64}, {65, 24, 96}, {0, 8, 8}, {63, 64, 32}}, 96, 72, true, 21);
  const Product e1 = reference(p, p.w), e3 = reference(p, p.w3);
  for (bool store : {true, false}) {
    const SwigluResult got = runSwiglu(p, store);
    checkOutput(p, got.h, "h", [&](size_t at, const std::string& where) {
      const float expected = moekit::activation::swiglu(float(e1.value[at]), float(e3.value[at]));
      EMU_EXPECT(sameBits(got.h[at], expected), where + ": got " + std::to_string(got.h[at]) + ", expected " +
                                                    std::to_string(expected));
    });
    if (!store) {
      for (float v : got.a1) EMU_EXPECT(sameBits(v, kSentinel), "a1 = null stores nothing");
      continue;
    }
    checkOutput(p, got.a1, "a1", [&](size_t at, const std::string& where) { expectExact(got.a1, e1, at, where); });
    checkOutput(p, got.a3, "a3", [&](size_t at, const std::string& where) { expectExact(got.a3, e3, at, where); });
  }
}

EMU_CASE("bf16 grouped GEMM swiglu epilogue: random a1, a3 within tolerance and h = swiglu of the stored a1, a3") {
  const Problem p = makeProblem(kHeterogeneous, 104, 136, false, 22);
  const Product e1 = reference(p, p.w), e3 = reference(p, p.w3);
  const SwigluResult got = runSwiglu(p, true);
  checkOutput(p, got.h, "h", [&](size_t at, const std::string& where) {
    const int k = p.shapes[size_t(groupOfIndex(p, at))].k;
    expectClose(got.a1, e1, k, at, where + " a1");
    expectClose(got.a3, e3, k, at, where + " a3");
    EMU_EXPECT(sameBits(got.h[at], moekit::activation::swiglu(got.a1[at], got.a3[at])), where + ": h = swiglu(a1, a3)");
  });
}

// ---- argument checks ----------------------------------------------------------------------------------
using moekit::test::expectError;

EMU_CASE("bf16 grouped GEMM: invalid arguments throw moekit::Error naming the argument before any launch") {
  const Problem p = makeProblem({{3, 16, 32}, {2, 8, 32}}, 32, 16, true, 41);
  const DeviceProblem d(p);
  emutest::DeviceArray<float> out(size_t(p.mPad()) * 16);
  const auto groups = [&](const std::function<void(std::vector<Bf16GemmGroup>&)>& edit) {
    std::vector<Bf16GemmGroup> g = d.groups(p);
    edit(g);
    return g;
  };
  using moekit::ErrorKind;
  using moekit::cuda::groupedGemmBf16;
  expectError(ErrorKind::Shape, {"groupedGemmBf16: lda", "positive multiple of 8", "got 36"},
              [&] { groupedGemmBf16(d.a.get(), 36, d.groups(p), out.get(), 16, nullptr); });
  expectError(ErrorKind::Shape, {"groups[1].k", "at most lda = 32", "got 12"}, [&] {
    groupedGemmBf16(d.a.get(), 32, groups([](auto& g) { g[1].k = 12; }), out.get(), 16, nullptr);
  });
  expectError(ErrorKind::Shape, {"groups[0].n", "[1, ldOut = 16]", "got 17"}, [&] {
    groupedGemmBf16(d.a.get(), 32, groups([](auto& g) { g[0].n = 17; }), out.get(), 16, nullptr);
  });
  expectError(ErrorKind::Shape, {"groups[1].rows", "≥ 0", "got -1"}, [&] {
    groupedGemmBf16(d.a.get(), 32, groups([](auto& g) { g[1].rows = -1; }), out.get(), 16, nullptr);
  });
  expectError(ErrorKind::Argument, {"groups[1].w:", "16-byte aligned", "null"}, [&] {
    groupedGemmBf16(d.a.get(), 32, groups([](auto& g) { g[1].w = nullptr; }), out.get(), 16, nullptr);
  });
  expectError(ErrorKind::Argument, {"a:", "8 bytes past a 16-byte boundary"},
              [&] { groupedGemmBf16(d.a.get() + 4, 32, d.groups(p), out.get(), 16, nullptr); });
  expectError(ErrorKind::Argument, {"groupedGemmBf16: out", "null"},
              [&] { groupedGemmBf16(d.a.get(), 32, d.groups(p), nullptr, 16, nullptr); });
  expectError(ErrorKind::Argument, {"groupedGemmBf16Swiglu: groups[0].w3", "null"}, [&] {
    moekit::cuda::groupedGemmBf16Swiglu(d.a.get(), 32, groups([](auto& g) { g[0].w3 = nullptr; }), out.get(), nullptr,
                                        nullptr, 16, nullptr);
  });
}

}  // namespace
