// cuda::quantizeFp8Blocks and cuda::groupedGemmFp8 (native/cuda/quantize_fp8.cu,
// grouped_gemm_fp8.cu, run on the SIMT emulator with the emulated tensor-core wrappers) against the
// CPU reference of cpu/fp8.h and the PyTorch golden test/fixtures/golden/fp8.safetensors.
//
// Quantisation: codes and scales bit-equal to cpu::quantizeFp8Blocks (both call core/fp8_blocks.h;
// max is order-independent), e4m3 and e5m2, partial blocks, and blocks that are all zero (scale 1),
// hold a NaN (scale NaN: compared as "both NaN"), an infinity, or only subnormals whose amax/fmax
// underflows (scale 1); and equal to the golden's codes and scales.
//
// GEMM tolerances (grouped_gemm_fp8.h states the order of the arithmetic). Small-integer codes
// (|value| ≤ 4) with power-of-two scales in 2^[−2, 2]: a block sum is an integer of magnitude
// ≤ 128·16 = 2^11, times s ∈ 2^[−4, 4] it is a multiple of 2^−4 below 2^15, and ≤ 3 blocks sum
// below 2^17: every intermediate is exact in fp32, so the device equals the reference bit for bit.
// Random data (quantised by the CPU): each block partial is a sum of ≤ 128 exact fp32 products
// (e4m3 × e4m3 has ≤ 8 significant bits), rounded once per addition; s = sa·sb and each fmaf
// round once; the reference rounds once to f32. With M = Σ_kb |sa·sb|·Σ_{k∈kb}|a·w| that gives
// |device − reference| ≤ (128 + kBlocks + 2)·2⁻²⁴·M to first order; the test allows
// (128 + kBlocks + 3)·2⁻²⁴·M (one unit for the second-order terms). The golden GEMM is compared as
// fp8.test.ts does: relative L2 error below 1e-5 (the bound; the golden is float64 rounded
// to f32, and the error above is ≈ 1e-6 at worst). Group sizes cover 0, 1, 63, 64, 65 and 130
// rows, one launch mixes groups of different n_g and k_g (partial K and N blocks), padding rows
// and columns past k_g hold NaN codes and NaN scales (must never be read), and out starts as a
// sentinel that padding rows and columns past n_g must keep. A deliberately broken GEMM
// (promoteOnceKernel below: the scales applied once at the end instead of per 128-wide block)
// must fail the same comparison, and on an emulated sm_80 the GEMM throws Error(Device). On an
// emulated sm_90 the same GEMM checks run the wgmma kernel (grouped_gemm_fp8_wgmma.cu), which must
// also give the mma.sync kernel's bits on random data (both add each k32 step's products in k order
// on the emulator).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/fp8_blocks.h"
#include "core/minifloat.h"
#include "cpu/fp8.h"
#include "cuda/grouped_gemm_fp8.h"
#include "cuda/quantize_fp8.h"
#include "cuda/tensor_core.h"
#include "gemm_test_support.h"
#include "harness.h"

namespace {

using moekit::Fp8Format;
using moekit::kFp8Block;
using moekit::cuda::Fp8GemmGroup;

constexpr uint8_t kNaNCode = 0x7F;
constexpr float kSentinel = -12345.0f;

bool sameBits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

const char* formatName(Fp8Format format) { return format == Fp8Format::E4M3 ? "e4m3" : "e5m2"; }

using moekit::test::expectError;

// ---- the golden file --------------------------------------------------------------------------
// safetensors: 8-byte little-endian header length, a JSON header {"name": {"dtype", "shape",
// "data_offsets": [begin, end)}, …} and the data. The header is read by looking up each tensor's
// entry (no nested objects inside one), enough for the files test/fixtures holds.
class Safetensors {
 public:
  explicit Safetensors(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    EMU_EXPECT(file.good(), "cannot open " + path);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    uint64_t headerLength = 0;
    EMU_EXPECT(bytes.size() >= 8, path + ": shorter than a safetensors header");
    for (int i = 7; i >= 0; --i) headerLength = headerLength << 8 | uint8_t(bytes[size_t(i)]);
    EMU_EXPECT(8 + headerLength <= bytes.size(), path + ": header past the end of the file");
    header_.assign(bytes.begin() + 8, bytes.begin() + 8 + int64_t(headerLength));
    data_.assign(bytes.begin() + 8 + int64_t(headerLength), bytes.end());
  }

  // Tensor `name` of dtype `dtype` ("F32", "U8", "I32") as T; shape returned in *shape.
  template <class T>
  std::vector<T> get(const std::string& name, const std::string& dtype, std::vector<int64_t>* shape) const {
    const size_t at = header_.find("\"" + name + "\":{");
    EMU_EXPECT(at != std::string::npos, "golden tensor " + name + " missing");
    const std::string entry = header_.substr(at, header_.find('}', at) - at);
    EMU_EXPECT(field(entry, "\"dtype\":\"", '"') == dtype, name + ": expected dtype " + dtype);
    const std::vector<int64_t> offsets = integers(field(entry, "\"data_offsets\":[", ']'));
    *shape = integers(field(entry, "\"shape\":[", ']'));
    int64_t count = 1;
    for (int64_t d : *shape) count *= d;
    EMU_EXPECT(offsets.size() == 2 && offsets[1] - offsets[0] == count * int64_t(sizeof(T)) &&
                   size_t(offsets[1]) <= data_.size(),
               name + ": data_offsets do not fit its shape and dtype");
    std::vector<T> values(static_cast<size_t>(count));
    std::memcpy(values.data(), data_.data() + offsets[0], size_t(count) * sizeof(T));
    return values;
  }

 private:
  static std::string field(const std::string& entry, const std::string& key, char end) {
    const size_t begin = entry.find(key);
    EMU_EXPECT(begin != std::string::npos, "golden header entry without " + key);
    const size_t from = begin + key.size();
    return entry.substr(from, entry.find(end, from) - from);
  }
  static std::vector<int64_t> integers(const std::string& list) {
    std::vector<int64_t> values;
    for (size_t at = 0; at < list.size();) {
      size_t used = 0;
      values.push_back(std::stoll(list.substr(at), &used));
      at += used + 1;  // the comma
    }
    return values;
  }

  std::string header_;
  std::vector<char> data_;
};

const Safetensors& golden() {
  static const Safetensors file(std::string(MOEKIT_GOLDEN_DIR) + "/fp8.safetensors");
  return file;
}

// ---- quantisation -----------------------------------------------------------------------------
struct Quantized {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
};

size_t scaleCount(int64_t matrices, int64_t rows, int64_t cols, int blockRows) {
  return size_t(matrices * moekit::fp8BlockCount(rows, blockRows) * moekit::fp8BlockCount(cols));
}

Quantized quantizeOnCpu(const std::vector<float>& x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                        Fp8Format format) {
  Quantized q{std::vector<uint8_t>(x.size()), std::vector<float>(scaleCount(matrices, rows, cols, blockRows))};
  moekit::cpu::quantizeFp8Blocks(x.data(), matrices, rows, cols, blockRows, format, q.codes.data(), q.scales.data());
  return q;
}

Quantized quantizeOnDevice(const std::vector<float>& x, int64_t matrices, int64_t rows, int64_t cols, int blockRows,
                           Fp8Format format) {
  emutest::DeviceArray<float> dx(x);
  emutest::DeviceArray<uint8_t> codes(x.size());
  emutest::DeviceArray<float> scales(scaleCount(matrices, rows, cols, blockRows));
  moekit::cuda::quantizeFp8Blocks(dx.get(), matrices, rows, cols, blockRows, format, codes.get(), scales.get(), nullptr);
  return {codes.download(), scales.download()};
}

// "" when codes are equal and scales bit-equal (or both NaN); otherwise the first difference.
std::string quantizedDifference(const Quantized& got, const Quantized& want) {
  for (size_t i = 0; i < want.codes.size(); ++i)
    if (got.codes[i] != want.codes[i])
      return "codes[" + std::to_string(i) + "]: got " + std::to_string(got.codes[i]) + ", expected " +
             std::to_string(want.codes[i]);
  for (size_t i = 0; i < want.scales.size(); ++i) {
    const bool equal = sameBits(got.scales[i], want.scales[i]) || (std::isnan(got.scales[i]) && std::isnan(want.scales[i]));
    if (!equal)
      return "scales[" + std::to_string(i) + "]: got " + std::to_string(got.scales[i]) + ", expected " +
             std::to_string(want.scales[i]);
  }
  return "";
}

// x [matrices, rows, cols]: values u·2^e with u uniform in [−1, 1] and e uniform in [−12, 12] per
// block (so the scales differ), then, when the block exists: block 0 of matrix 0 all zero (scale
// 1), block 1 holding one NaN, block 2 one +inf, block 3 only subnormals of at most 200·2^−149
// (amax/fmax underflows to 0: scale 1), block 4 holding −fmax/8, block 5 subnormals up to
// 1000·2^−149 (an e4m3 scale that is itself subnormal, the quotients saturating).
std::vector<float> quantizationInput(int64_t matrices, int64_t rows, int64_t cols, int blockRows, Fp8Format format,
                                     uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const int64_t rowBlocks = moekit::fp8BlockCount(rows, blockRows), colBlocks = moekit::fp8BlockCount(cols);
  std::vector<int> exponent(size_t(matrices * rowBlocks * colBlocks));
  for (int& e : exponent) e = int(rng() % 25) - 12;
  std::vector<float> x(size_t(matrices * rows * cols));
  const auto blockOf = [&](int64_t m, int64_t r, int64_t c) { return (m * rowBlocks + r / blockRows) * colBlocks + c / kFp8Block; };
  for (int64_t m = 0; m < matrices; ++m)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t b = blockOf(m, r, c);
        float& v = x[size_t((m * rows + r) * cols + c)];
        switch (b) {
          case 0: v = 0.0f; break;
          case 3: v = std::ldexp(float(int(rng() % 401) - 200), -149); break;
          case 5: v = std::ldexp(float(int(rng() % 2001) - 1000), -149); break;
          default: v = std::ldexp(uniform(rng), exponent[size_t(b)]);
        }
      }
  const auto plant = [&](int64_t b, float value) {
    for (int64_t m = 0; m < matrices; ++m)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          if (blockOf(m, r, c) == b) {
            x[size_t((m * rows + r) * cols + c)] = value;
            return;
          }
  };
  plant(1, NAN);
  plant(2, INFINITY);
  plant(4, -moekit::fp8Max(format) / 8);
  return x;
}

void checkQuantization(int64_t matrices, int64_t rows, int64_t cols, int blockRows, uint32_t seed) {
  for (Fp8Format format : {Fp8Format::E4M3, Fp8Format::E5M2}) {
    const std::vector<float> x = quantizationInput(matrices, rows, cols, blockRows, format, seed);
    const std::string difference = quantizedDifference(quantizeOnDevice(x, matrices, rows, cols, blockRows, format),
                                                       quantizeOnCpu(x, matrices, rows, cols, blockRows, format));
    EMU_EXPECT(difference.empty(), std::string(formatName(format)) + " [" + std::to_string(matrices) + ", " +
                                       std::to_string(rows) + ", " + std::to_string(cols) + "] blockRows " +
                                       std::to_string(blockRows) + ": " + difference);
  }
}

EMU_CASE("fp8 quantisation 1×128 (activations): codes and scales equal cpu::quantizeActivations bit for bit, partial and special blocks") {
  checkQuantization(1, 37, 700, 1, 1);
  checkQuantization(1, 5, 128, 1, 2);
  checkQuantization(1, 3, 16, 1, 3);
  checkQuantization(2, 9, 300, 1, 4);
}

EMU_CASE("fp8 quantisation 128×128 (weights): codes and scales equal cpu::quantizeWeights bit for bit, partial and special blocks") {
  checkQuantization(3, 200, 300, kFp8Block, 5);
  checkQuantization(1, 128, 128, kFp8Block, 6);
  checkQuantization(2, 1, 520, kFp8Block, 7);
  checkQuantization(1, 300, 16, kFp8Block, 8);
}

EMU_CASE("fp8 quantisation: the golden gemm.a (1×128) and gemm.b (128×128) give fp8.safetensors' codes and scales") {
  std::vector<int64_t> aShape, bShape, shape;
  const std::vector<float> a = golden().get<float>("gemm.a", "F32", &aShape);
  const std::vector<float> b = golden().get<float>("gemm.b", "F32", &bShape);
  const Quantized aWant{golden().get<uint8_t>("gemm.a.codes", "U8", &shape), golden().get<float>("gemm.a.scales", "F32", &shape)};
  const Quantized bWant{golden().get<uint8_t>("gemm.b.codes", "U8", &shape), golden().get<float>("gemm.b.scales", "F32", &shape)};
  const std::string aDifference = quantizedDifference(quantizeOnDevice(a, 1, aShape[0], aShape[1], 1, Fp8Format::E4M3), aWant);
  EMU_EXPECT(aDifference.empty(), "gemm.a: " + aDifference);
  const std::string bDifference =
      quantizedDifference(quantizeOnDevice(b, bShape[0], bShape[1], bShape[2], kFp8Block, Fp8Format::E4M3), bWant);
  EMU_EXPECT(bDifference.empty(), "gemm.b: " + bDifference);
}

EMU_CASE("fp8 quantisation: invalid arguments throw moekit::Error naming the argument; empty inputs launch nothing") {
  using moekit::ErrorKind;
  using moekit::cuda::quantizeFp8Blocks;
  emutest::DeviceArray<float> x(256), scales(2);
  emutest::DeviceArray<uint8_t> codes(256);
  expectError(ErrorKind::Argument, {"quantizeFp8Blocks: blockRows", "1 or 128", "got 64"}, [&] {
    quantizeFp8Blocks(x.get(), 1, 2, 128, 64, Fp8Format::E4M3, codes.get(), scales.get(), nullptr);
  });
  expectError(ErrorKind::Shape, {"quantizeFp8Blocks: matrices, rows, cols", "≥ 0", "got 1, -2, 128"}, [&] {
    quantizeFp8Blocks(x.get(), 1, -2, 128, 1, Fp8Format::E4M3, codes.get(), scales.get(), nullptr);
  });
  expectError(ErrorKind::Argument, {"quantizeFp8Blocks: codes", "null"}, [&] {
    moekit::cuda::quantizeActivationsFp8(x.get(), 2, 128, Fp8Format::E4M3, nullptr, scales.get(), nullptr);
  });
  expectError(ErrorKind::Argument, {"quantizeFp8Blocks: scales", "null"}, [&] {
    moekit::cuda::quantizeWeightsFp8(x.get(), 1, 2, 128, Fp8Format::E5M2, codes.get(), nullptr, nullptr);
  });
  expectError(ErrorKind::Argument, {"quantizeFp8Blocks: x", "null"}, [&] {
    moekit::cuda::quantizeWeightsFp8(nullptr, 1, 2, 128, Fp8Format::E5M2, codes.get(), scales.get(), nullptr);
  });
  moekit::cuda::quantizeActivationsFp8(nullptr, 0, 128, Fp8Format::E4M3, nullptr, nullptr, nullptr);
  moekit::cuda::quantizeWeightsFp8(nullptr, 4, 128, 0, Fp8Format::E4M3, nullptr, nullptr, nullptr);
}

// ---- the GEMM ------------------------------------------------------------------------------------
using moekit::test::GroupShape;

// A problem on the host in the padded layout of grouped_gemm_fp8.h.
struct Problem {
  std::vector<GroupShape> shapes;
  int lda = 0, ldaScales = 0, ldOut = 0;
  std::vector<int64_t> start;
  std::vector<uint8_t> a;      // [Mpad, lda]
  std::vector<float> aScales;  // [Mpad, ldaScales]
  std::vector<std::vector<uint8_t>> w;
  std::vector<std::vector<float>> wScales;
  int64_t mPad() const { return start.back(); }
};

int64_t kBlocksOf(int k) { return moekit::fp8BlockCount(k); }

Problem emptyProblem(const std::vector<GroupShape>& shapes, int lda, int ldaScales, int ldOut) {
  Problem p;
  p.shapes = shapes;
  p.lda = lda;
  p.ldaScales = ldaScales;
  p.ldOut = ldOut;
  p.start = moekit::cuda::fp8GemmRowStarts(moekit::test::groupsOfShapes<Fp8GemmGroup>(shapes));
  p.a.assign(size_t(p.mPad()) * lda, kNaNCode);
  p.aScales.assign(size_t(p.mPad()) * ldaScales, NAN);
  return p;
}

// Codes of integers in [−4, 4] (exact in e4m3), scales 2^[−2, 2].
Problem integerProblem(const std::vector<GroupShape>& shapes, int lda, int ldaScales, int ldOut, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto code = [&] { return moekit::encodeE4M3(float(int(rng() % 9) - 4)); };
  const auto scale = [&] { return std::ldexp(1.0f, int(rng() % 5) - 2); };
  Problem p = emptyProblem(shapes, lda, ldaScales, ldOut);
  for (size_t g = 0; g < shapes.size(); ++g) {
    const GroupShape& s = shapes[g];
    for (int r = 0; r < s.rows; ++r) {
      const size_t row = size_t(p.start[g] + r);
      for (int k = 0; k < s.k; ++k) p.a[row * size_t(lda) + size_t(k)] = code();
      for (int kb = 0; kb < kBlocksOf(s.k); ++kb) p.aScales[row * size_t(ldaScales) + size_t(kb)] = scale();
    }
    std::vector<uint8_t> w(size_t(s.n) * size_t(s.k));
    for (uint8_t& c : w) c = code();
    std::vector<float> ws(size_t(moekit::fp8BlockCount(s.n) * kBlocksOf(s.k)));
    for (float& v : ws) v = scale();
    p.w.push_back(w);
    p.wScales.push_back(ws);
  }
  return p;
}

// f32 data quantised by the CPU (cpu/fp8.h): a = u·2^e per (row, K block), e ∈ [−6, 6], so the
// activation scales differ between blocks; w uniform in [−1, 1] times 2^e per expert.
Problem randomProblem(const std::vector<GroupShape>& shapes, int lda, int ldaScales, int ldOut, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Problem p = emptyProblem(shapes, lda, ldaScales, ldOut);
  for (size_t g = 0; g < shapes.size(); ++g) {
    const GroupShape& s = shapes[g];
    std::vector<float> x(size_t(s.rows) * size_t(s.k));
    for (int r = 0; r < s.rows; ++r) {
      std::vector<int> e(size_t(kBlocksOf(s.k)));
      for (int& v : e) v = int(rng() % 13) - 6;
      for (int k = 0; k < s.k; ++k) x[size_t(r) * size_t(s.k) + size_t(k)] = std::ldexp(uniform(rng), e[size_t(k / kFp8Block)]);
    }
    const Quantized qa = quantizeOnCpu(x, 1, s.rows, s.k, 1, Fp8Format::E4M3);
    for (int r = 0; r < s.rows; ++r) {
      const size_t row = size_t(p.start[g] + r);
      std::memcpy(&p.a[row * size_t(lda)], &qa.codes[size_t(r) * size_t(s.k)], size_t(s.k));
      std::memcpy(&p.aScales[row * size_t(ldaScales)], &qa.scales[size_t(r * kBlocksOf(s.k))], size_t(kBlocksOf(s.k)) * sizeof(float));
    }
    const int e = int(rng() % 9) - 4;
    std::vector<float> wf(size_t(s.n) * size_t(s.k));
    for (float& v : wf) v = std::ldexp(uniform(rng), e);
    const Quantized qw = quantizeOnCpu(wf, 1, s.n, s.k, kFp8Block, Fp8Format::E4M3);
    p.w.push_back(qw.codes);
    p.wScales.push_back(qw.scales);
  }
  return p;
}

// The reference [Mpad, ldOut] (cpu::groupedGemmFp8Reference, one call per group on its compact
// rows) and the tolerance of each output, (128 + kBlocks + 3)·2⁻²⁴·Σ_kb |sa·sb|·Σ_k |a·w|.
struct Expected {
  std::vector<float> value;
  std::vector<double> bound;
};

Expected reference(const Problem& p) {
  Expected e{std::vector<float>(size_t(p.mPad()) * size_t(p.ldOut), 0.0f), std::vector<double>(size_t(p.mPad()) * size_t(p.ldOut), 0.0)};
  for (size_t g = 0; g < p.shapes.size(); ++g) {
    const GroupShape& s = p.shapes[g];
    if (s.rows == 0) continue;
    const int64_t kBlocks = kBlocksOf(s.k);
    std::vector<uint8_t> a(size_t(s.rows) * size_t(s.k));
    std::vector<float> sa(size_t(s.rows * kBlocks)), out(size_t(s.rows) * size_t(s.n));
    for (int r = 0; r < s.rows; ++r) {
      const size_t row = size_t(p.start[g] + r);
      std::memcpy(&a[size_t(r) * size_t(s.k)], &p.a[row * size_t(p.lda)], size_t(s.k));
      std::memcpy(&sa[size_t(r * kBlocks)], &p.aScales[row * size_t(p.ldaScales)], size_t(kBlocks) * sizeof(float));
    }
    const int32_t rows = s.rows;
    moekit::cpu::groupedGemmFp8Reference(a.data(), Fp8Format::E4M3, sa.data(), p.w[g].data(), Fp8Format::E4M3,
                                         p.wScales[g].data(), &rows, 1, s.rows, s.n, s.k, out.data());
    const double units = double(kFp8Block + kBlocks + 3) * std::ldexp(1.0, -24);
    for (int r = 0; r < s.rows; ++r)
      for (int n = 0; n < s.n; ++n) {
        double magnitude = 0;
        for (int64_t kb = 0; kb < kBlocks; ++kb) {
          double block = 0;
          for (int k = int(kb) * kFp8Block; k < s.k && k < int(kb + 1) * kFp8Block; ++k)
            block += std::fabs(double(moekit::decodeE4M3(a[size_t(r) * size_t(s.k) + size_t(k)])) *
                               double(moekit::decodeE4M3(p.w[g][size_t(n) * size_t(s.k) + size_t(k)])));
          magnitude += std::fabs(double(sa[size_t(r * kBlocks + kb)]) * double(p.wScales[g][size_t((n / kFp8Block) * kBlocks + kb)])) * block;
        }
        const size_t at = size_t(p.start[g] + r) * size_t(p.ldOut) + size_t(n);
        e.value[at] = out[size_t(r) * size_t(s.n) + size_t(n)];
        e.bound[at] = units * magnitude;
      }
  }
  return e;
}

// "" when every real output (row of a group, column < n_g) equals the reference (bit for bit when
// exact, else within its bound) and every other element still holds the sentinel; otherwise the
// first difference and the number of differing elements.
std::string gemmDifference(const Problem& p, const std::vector<float>& got, const Expected& want, bool exact) {
  std::vector<bool> real(got.size(), false);
  std::string first;
  size_t wrong = 0;
  double worst = 0;  // the largest |error| / bound
  for (size_t g = 0; g < p.shapes.size(); ++g)
    for (int r = 0; r < p.shapes[g].rows; ++r)
      for (int n = 0; n < p.shapes[g].n; ++n) {
        const size_t at = size_t(p.start[g] + r) * size_t(p.ldOut) + size_t(n);
        real[at] = true;
        const double error = std::fabs(double(got[at]) - double(want.value[at]));
        if (want.bound[at] > 0) worst = std::max(worst, error / want.bound[at]);
        const bool ok = exact ? sameBits(got[at], want.value[at]) : error <= want.bound[at];
        if (ok) continue;
        if (wrong++ == 0)
          first = "group " + std::to_string(g) + " row " + std::to_string(r) + " column " + std::to_string(n) + ": got " +
                  std::to_string(got[at]) + ", expected " + std::to_string(want.value[at]) +
                  (exact ? " bit for bit" : " within " + std::to_string(want.bound[at]));
      }
  for (size_t i = 0; i < got.size(); ++i) {
    if (real[i] || sameBits(got[i], kSentinel)) continue;
    if (wrong++ == 0) first = "padding row or column past n_g at index " + std::to_string(i) + " was written";
  }
  if (!exact) std::fprintf(stderr, "largest |device − reference| / bound: %.3g\n", worst);
  return wrong == 0 ? "" : first + " (" + std::to_string(wrong) + " elements differ)";
}

// Device copies of a problem; groups() points the descriptors at them.
struct DeviceProblem {
  emutest::DeviceArray<uint8_t> a;
  emutest::DeviceArray<float> aScales;
  std::vector<std::unique_ptr<emutest::DeviceArray<uint8_t>>> w;
  std::vector<std::unique_ptr<emutest::DeviceArray<float>>> wScales;
  explicit DeviceProblem(const Problem& p) : a(p.a), aScales(p.aScales) {
    for (size_t g = 0; g < p.shapes.size(); ++g) {
      w.push_back(std::make_unique<emutest::DeviceArray<uint8_t>>(p.w[g]));
      wScales.push_back(std::make_unique<emutest::DeviceArray<float>>(p.wScales[g]));
    }
  }
  std::vector<Fp8GemmGroup> groups(const Problem& p) const {
    std::vector<Fp8GemmGroup> groups = moekit::test::groupsOfShapes<Fp8GemmGroup>(p.shapes);
    for (size_t g = 0; g < groups.size(); ++g) {
      groups[g].w = w[g]->get();
      groups[g].wScales = wScales[g]->get();
    }
    return groups;
  }
};

std::vector<float> runGemm(const Problem& p) {
  const DeviceProblem d(p);
  emutest::DeviceArray<float> out(std::vector<float>(size_t(p.mPad()) * size_t(p.ldOut), kSentinel));
  moekit::cuda::groupedGemmFp8(d.a.get(), p.lda, d.aScales.get(), p.ldaScales, d.groups(p), out.get(), p.ldOut, nullptr);
  return out.download();
}

void expectGemm(const Problem& p, bool exact, const std::string& what) {
  const std::string difference = gemmDifference(p, runGemm(p), reference(p), exact);
  EMU_EXPECT(difference.empty(), what + ": " + difference);
}

// k = 384: three K blocks (six pipeline steps); n = 200: column tiles 0, 64 (weight block 0) and
// 128, 192 (block 1, partial).
const std::vector<GroupShape> kEdgeGroups = {{0, 200, 384}, {1, 200, 384}, {63, 200, 384},
                                             {64, 200, 384}, {65, 200, 384}, {130, 200, 384}};
// Unequal n_g and k_g: k = 304 ends on a 48-wide block, k = 48 and 32 are one partial stage.
const std::vector<GroupShape> kHeterogeneous = {{65, 24, 32}, {0, 100, 96}, {63, 130, 304}, {1, 8, 48}, {20, 256, 128}};

void checkEdgeGroups() { expectGemm(integerProblem(kEdgeGroups, 400, 4, 208, 11), true, "edge groups"); }

void checkHeterogeneous() { expectGemm(integerProblem(kHeterogeneous, 320, 3, 264, 12), true, "heterogeneous groups"); }

void checkRandom() {
  expectGemm(randomProblem(kEdgeGroups, 384, 3, 200, 13), false, "edge groups");
  expectGemm(randomProblem(kHeterogeneous, 304, 3, 256, 14), false, "heterogeneous groups");
}

void checkThreadOrder() {
  const Problem p = integerProblem({{65, 72, 384}, {1, 40, 160}}, 384, 3, 72, 15);
  const Expected want = reference(p);
  for (uint64_t seed : {1u, 2u, 3u, 4u}) {
    moekit::emu::setSeed(seed);
    const std::string difference = gemmDifference(p, runGemm(p), want, true);
    EMU_EXPECT(difference.empty(), "seed " + std::to_string(seed) + ": " + difference);
  }
}

void checkGolden();

// Makes this process's emulated device compute capability 9.0 (each case runs in its own
// process), where groupedGemmFp8 runs the wgmma kernel.
void onEmulatedSm90() {
  setenv("MOEKIT_EMU_SM", "90", 1);
  EMU_EXPECT(moekit::cuda::fp8GemmKernel(0) == moekit::cuda::Fp8GemmKernel::Wgmma, "sm_90 runs the wgmma kernel");
}

EMU_CASE("fp8 grouped GEMM: equals cpu::groupedGemmFp8Reference bit for bit on small integers, groups of 0, 1, 63, 64, 65, 130 rows") {
  EMU_EXPECT(moekit::cuda::fp8GemmKernel(0) == moekit::cuda::Fp8GemmKernel::MmaSync, "sm_89 runs the mma.sync kernel");
  checkEdgeGroups();
}

EMU_CASE("fp8 grouped GEMM: heterogeneous experts (unequal n_g and k_g, partial K and N blocks) in one launch, bit for bit on small integers") {
  checkHeterogeneous();
}

EMU_CASE("fp8 grouped GEMM: CPU-quantised random data within (128 + kBlocks + 3)·2^-24·Σ|sa·sb·a·w| of the reference") {
  checkRandom();
}

EMU_CASE("fp8 grouped GEMM: the result does not depend on the emulator's thread order (pipeline barriers)") {
  checkThreadOrder();
}

EMU_CASE("fp8 grouped GEMM: the golden gemm (groups 0, 37, 128, 5, 211) gives fp8.safetensors gemm.out within 1e-5 relative") {
  checkGolden();
}

EMU_CASE("fp8 grouped GEMM, wgmma (emulated sm_90): bit for bit on small integers, groups of 0, 1, 63, 64, 65, 130 rows and heterogeneous experts") {
  onEmulatedSm90();
  checkEdgeGroups();
  checkHeterogeneous();
}

EMU_CASE("fp8 grouped GEMM, wgmma (emulated sm_90): random data within the bound, and independent of the thread order") {
  onEmulatedSm90();
  checkRandom();
  checkThreadOrder();
}

EMU_CASE("fp8 grouped GEMM, wgmma (emulated sm_90): the golden gemm within 1e-5 relative") {
  onEmulatedSm90();
  checkGolden();
}

EMU_CASE("fp8 grouped GEMM: wgmma and mma.sync (MOEKIT_FP8_KERNEL=mma.sync on sm_90) give the same bits on random data") {
  onEmulatedSm90();
  const Problem p = randomProblem(kHeterogeneous, 304, 3, 256, 16);
  const std::vector<float> wgmma = runGemm(p);
  setenv("MOEKIT_FP8_KERNEL", "mma.sync", 1);
  EMU_EXPECT(moekit::cuda::fp8GemmKernel(0) == moekit::cuda::Fp8GemmKernel::MmaSync, "the variable forces mma.sync");
  const std::vector<float> mma = runGemm(p);
  size_t differ = 0;
  for (size_t i = 0; i < mma.size(); ++i) differ += !sameBits(mma[i], wgmma[i]);
  EMU_EXPECT(differ == 0, std::to_string(differ) + " elements differ between the two kernels");
  setenv("MOEKIT_FP8_KERNEL", "wgmma", 1);
  expectError(moekit::ErrorKind::Argument, {"groupedGemmFp8: MOEKIT_FP8_KERNEL", "mma.sync or unset", "got wgmma"},
              [&] { runGemm(p); });
}

void checkGolden() {
  std::vector<int64_t> aShape, bShape, shape;
  const std::vector<uint8_t> aCodes = golden().get<uint8_t>("gemm.a.codes", "U8", &aShape);
  const std::vector<float> aScales = golden().get<float>("gemm.a.scales", "F32", &shape);
  const std::vector<uint8_t> bCodes = golden().get<uint8_t>("gemm.b.codes", "U8", &bShape);
  const std::vector<float> bScales = golden().get<float>("gemm.b.scales", "F32", &shape);
  const std::vector<int32_t> sizes = golden().get<int32_t>("gemm.groupSizes", "I32", &shape);
  const std::vector<float> out = golden().get<float>("gemm.out", "F32", &shape);
  const int K = int(aShape[1]), N = int(bShape[1]), kBlocks = int(kBlocksOf(K)), nBlocks = int(moekit::fp8BlockCount(N));
  std::vector<GroupShape> shapes;
  for (int32_t rows : sizes) shapes.push_back({rows, N, K});
  Problem p = emptyProblem(shapes, K, kBlocks, N);
  int64_t source = 0;  // row of the golden's unpadded a
  for (size_t g = 0; g < shapes.size(); ++g) {
    for (int r = 0; r < shapes[g].rows; ++r, ++source) {
      const size_t row = size_t(p.start[g] + r);
      std::memcpy(&p.a[row * size_t(K)], &aCodes[size_t(source) * size_t(K)], size_t(K));
      std::memcpy(&p.aScales[row * size_t(kBlocks)], &aScales[size_t(source) * size_t(kBlocks)], size_t(kBlocks) * sizeof(float));
    }
    p.w.emplace_back(bCodes.begin() + int64_t(g) * N * K, bCodes.begin() + int64_t(g + 1) * N * K);
    p.wScales.emplace_back(bScales.begin() + int64_t(g) * nBlocks * kBlocks, bScales.begin() + int64_t(g + 1) * nBlocks * kBlocks);
  }
  EMU_EXPECT(source == aShape[0], "gemm.groupSizes sum to the rows of gemm.a");
  const std::vector<float> got = runGemm(p);
  const std::string difference = gemmDifference(p, got, reference(p), false);
  EMU_EXPECT(difference.empty(), "against cpu::groupedGemmFp8Reference: " + difference);
  double squaredError = 0, squaredNorm = 0;
  source = 0;
  for (size_t g = 0; g < shapes.size(); ++g)
    for (int r = 0; r < shapes[g].rows; ++r, ++source)
      for (int n = 0; n < N; ++n) {
        const double want = out[size_t(source) * size_t(N) + size_t(n)];
        const double error = double(got[size_t(p.start[g] + r) * size_t(N) + size_t(n)]) - want;
        squaredError += error * error;
        squaredNorm += want * want;
      }
  const double relative = std::sqrt(squaredError / squaredNorm);
  std::fprintf(stderr, "golden gemm: relative L2 error %.3g\n", relative);
  EMU_EXPECT(relative < 1e-5, "relative L2 error " + std::to_string(relative) + " against gemm.out");
}

// ---- a deliberately broken GEMM -------------------------------------------------------------------
// The same mma over the whole of K in one fp32 accumulator, the scales applied once at the end
// (those of K block 0): the defect per-block promotion exists to avoid. One warp per 16×8 output
// tile of a single group, fragments read straight from global memory (k a multiple of 32; rows up
// to the next multiple of 16 lie inside the padded a). Compiled only into this test, to show that
// the comparison catches it.
__global__ void promoteOnceKernel(const uint8_t* a, int lda, const float* aScales, int ldaScales, int rows,
                                  const uint8_t* w, const float* wScales, int n, int k, float* out, int ldOut) {
  const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
  const int r0 = int(blockIdx.y) * 16, n0 = int(blockIdx.x) * 8;
  const auto word = [](const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  float c[4] = {};
  for (int k0 = 0; k0 < k; k0 += 32) {
    const uint8_t* row0 = a + int64_t(r0 + g) * lda + k0 + 4 * t;
    const uint8_t* row8 = row0 + int64_t(8) * lda;
    const uint32_t fa[4] = {word(row0), word(row8), word(row0 + 16), word(row8 + 16)};
    const bool column = n0 + g < n;
    const uint8_t* wRow = w + int64_t(n0 + g) * k + k0 + 4 * t;
    const uint32_t fb[2] = {column ? word(wRow) : 0u, column ? word(wRow + 16) : 0u};
    moekit::cuda::mmaE4m3m16n8k32(c, fa, fb);
  }
  const int kBlocks = (k + kFp8Block - 1) / kFp8Block;
  for (int e = 0; e < 4; ++e) {
    const int row = r0 + g + 8 * (e / 2), col = n0 + 2 * t + e % 2;
    if (row < rows && col < n) out[int64_t(row) * ldOut + col] = c[e] * (aScales[int64_t(row) * ldaScales] * wScales[col / kFp8Block * kBlocks]);
  }
}

EMU_CASE("fp8 grouped GEMM: a GEMM that promotes the scales once at the end instead of per 128-wide block fails the comparison") {
  const Problem p = integerProblem({{65, 136, 384}}, 384, 3, 136, 16);
  const Expected want = reference(p);
  const std::string shipped = gemmDifference(p, runGemm(p), want, true);
  EMU_EXPECT(shipped.empty(), "the shipped kernel: " + shipped);
  const DeviceProblem d(p);
  emutest::DeviceArray<float> out(std::vector<float>(size_t(p.mPad()) * size_t(p.ldOut), kSentinel));
  const GroupShape s = p.shapes[0];
  EMU_CUDA(moekit::launch<promoteOnceKernel>(dim3(unsigned((s.n + 7) / 8), unsigned((s.rows + 15) / 16)), dim3(32), 0,
                                              nullptr, d.a.get(), p.lda, d.aScales.get(), p.ldaScales, s.rows,
                                              d.w[0]->get(), d.wScales[0]->get(), s.n, s.k, out.get(), p.ldOut));
  const std::string broken = gemmDifference(p, out.download(), want, true);
  std::fprintf(stderr, "promotion once at the end: %s\n", broken.c_str());
  EMU_EXPECT(!broken.empty(), "the once-promoting GEMM matched the reference: the comparison misses the promotion");
  emutest::expectContains(broken, {"expected", "bit for bit"});
}

// ---- launch conditions and arguments --------------------------------------------------------------
EMU_CASE("fp8 grouped GEMM: groups without rows launch nothing and need no pointers") {
  const std::vector<Fp8GemmGroup> groups = moekit::test::groupsOfShapes<Fp8GemmGroup>({{0, 64, 128}, {0, 8, 32}});
  moekit::cuda::groupedGemmFp8(nullptr, 128, nullptr, 1, groups, nullptr, 64, nullptr);
  moekit::cuda::groupedGemmFp8(nullptr, 128, nullptr, 1, {}, nullptr, 64, nullptr);
}

EMU_CASE("fp8 grouped GEMM: on an emulated sm_80 it throws Error(Device) before any launch; quantisation still runs") {
  setenv("MOEKIT_EMU_SM", "80", 1);  // each case runs in its own process
  const Problem p = integerProblem({{3, 16, 128}}, 128, 1, 16, 17);
  const DeviceProblem d(p);
  emutest::DeviceArray<float> out(std::vector<float>(size_t(p.mPad()) * 16, kSentinel));
  expectError(moekit::ErrorKind::Device, {"groupedGemmFp8: device 0", "compute capability 8.9 or newer", "got 8.0"}, [&] {
    moekit::cuda::groupedGemmFp8(d.a.get(), p.lda, d.aScales.get(), p.ldaScales, d.groups(p), out.get(), 16, nullptr);
  });
  for (float v : out.download()) EMU_EXPECT(sameBits(v, kSentinel), "nothing was written");
  checkQuantization(1, 3, 200, 1, 18);
  checkQuantization(1, 130, 200, kFp8Block, 19);
}

EMU_CASE("fp8 grouped GEMM: invalid arguments throw moekit::Error naming the argument before any launch") {
  const Problem p = integerProblem({{3, 16, 128}, {2, 8, 32}}, 128, 1, 16, 41);
  const DeviceProblem d(p);
  emutest::DeviceArray<float> out(size_t(p.mPad()) * 16);
  const auto groups = [&](const std::function<void(std::vector<Fp8GemmGroup>&)>& edit) {
    std::vector<Fp8GemmGroup> g = d.groups(p);
    edit(g);
    return g;
  };
  const auto call = [&](int lda, int ldaScales, const std::vector<Fp8GemmGroup>& g, const uint8_t* a = nullptr) {
    moekit::cuda::groupedGemmFp8(a ? a : d.a.get(), lda, d.aScales.get(), ldaScales, g, out.get(), 16, nullptr);
  };
  using moekit::ErrorKind;
  expectError(ErrorKind::Shape, {"groupedGemmFp8: lda", "positive multiple of 16", "got 136"}, [&] { call(136, 1, d.groups(p)); });
  expectError(ErrorKind::Shape, {"groupedGemmFp8: ldaScales", "≥ 1", "got 0"}, [&] { call(128, 0, d.groups(p)); });
  expectError(ErrorKind::Shape, {"groups[1].k", "positive multiple of 16", "got 40"},
              [&] { call(128, 1, groups([](auto& g) { g[1].k = 40; })); });
  expectError(ErrorKind::Shape, {"groups[0].k", "at most 128 · ldaScales = 128", "got 144"},
              [&] { call(160, 1, groups([](auto& g) { g[0].k = 144; })); });
  expectError(ErrorKind::Shape, {"groups[0].n", "[1, ldOut = 16]", "got 17"},
              [&] { call(128, 1, groups([](auto& g) { g[0].n = 17; })); });
  expectError(ErrorKind::Shape, {"groups[1].rows", "≥ 0", "got -1"},
              [&] { call(128, 1, groups([](auto& g) { g[1].rows = -1; })); });
  expectError(ErrorKind::Argument, {"groups[1].w:", "16-byte aligned", "null"},
              [&] { call(128, 1, groups([](auto& g) { g[1].w = nullptr; })); });
  expectError(ErrorKind::Argument, {"groups[0].wScales", "null"},
              [&] { call(128, 1, groups([](auto& g) { g[0].wScales = nullptr; })); });
  expectError(ErrorKind::Argument, {"groupedGemmFp8: a:", "8 bytes past a 16-byte boundary"},
              [&] { call(128, 1, d.groups(p), d.a.get() + 8); });
  expectError(ErrorKind::Argument, {"groupedGemmFp8: aScales", "null"}, [&] {
    moekit::cuda::groupedGemmFp8(d.a.get(), 128, nullptr, 1, d.groups(p), out.get(), 16, nullptr);
  });
  expectError(ErrorKind::Argument, {"groupedGemmFp8: out", "null"}, [&] {
    moekit::cuda::groupedGemmFp8(d.a.get(), 128, d.aScales.get(), 1, d.groups(p), nullptr, 16, nullptr);
  });
}

}  // namespace
