// cuda::Experts (experts.h): validation, host staging and the order of the device stages. No
// kernel lives here: permute.cu, grouped_gemm.cu, grouped_gemm_bf16.cu, grouped_gemm_fp8.cu,
// quantize_fp8.cu, padded_rows.cu and precision_operands.cu hold them and their launchers.
#include "experts.h"

#include <algorithm>
#include <string>

#include "../core/errors.h"
#include "../core/fp8_blocks.h"
#include "../layer/expert_common.h"
#include "grouped_gemm.h"
#include "grouped_gemm_bf16.h"
#include "grouped_gemm_bf16_backward.h"
#include "grouped_gemm_fp8.h"
#include "padded_rows.h"
#include "precision_operands.h"
#include "quantize_fp8.h"
#include "tensor_core.h"

namespace moekit::cuda {

namespace {

// token [n] in [0,T), expert [n] in [0,E): the checks and messages of cpu::planPermutation.
void checkAssignments(int T, int E, int n, const int32_t* token, const int32_t* expert) {
  if (n > 0 && !token) throw Error(ErrorKind::Argument, "permute: token must not be null");
  if (n > 0 && !expert) throw Error(ErrorKind::Argument, "permute: expert must not be null");
  const auto check = [n](const char* name, const int32_t* index, int bound, const char* boundName) {
    for (int i = 0; i < n; ++i)
      if (index[i] < 0 || index[i] >= bound)
        throw Error(ErrorKind::Argument, std::string("permute: ") + name + "[" + std::to_string(i) +
                                             "] must be in [0, " + boundName + " = " +
                                             std::to_string(bound) + "), got " +
                                             std::to_string(index[i]));
  };
  check("token", token, T, "T");
  check("expert", expert, E, "E");
}

static_assert(kBf16GemmRowAlign == kFp8GemmRowAlign, "one padded layout serves both tensor-core GEMMs");
constexpr int kRowAlign = kBf16GemmRowAlign;

// Whether operands built from a weight at write count `seen` must be rebuilt: always without a
// counter.
bool stale(const uint64_t* version, uint64_t seen) { return !version || *version != seen; }
uint64_t seenOf(const uint64_t* version) { return version ? *version : UINT64_MAX; }

int64_t roundUp(int64_t v, int64_t unit) { return (v + unit - 1) / unit * unit; }

// The per-expert descriptors of a tensor-core GEMM over one group: rows counts[e], n × k, and
// expert e's [n, k] block of the bf16 weight operand w (null: the TN GEMMs read no weight).
std::vector<Bf16GemmGroup> bf16Groups(const int32_t* counts, int experts, int n, int k, const uint16_t* w) {
  std::vector<Bf16GemmGroup> groups(static_cast<size_t>(experts));
  for (int e = 0; e < experts; ++e)
    groups[size_t(e)] = Bf16GemmGroup{counts[e], n, k, w ? w + int64_t(e) * n * k : nullptr, nullptr};
  return groups;
}

}  // namespace

ExpertGemm expertGemm(Precision precision, int device) {
  if (precision.compute != Precision::Compute::Bf16) return ExpertGemm::F32Simt;
  if (precision.experts != Precision::Experts::Fp8) return ExpertGemm::TensorCore;
  int major = 0, minor = 0;
  checkCuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
            "cuda::Experts: cudaDeviceGetAttribute");
  checkCuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
            "cuda::Experts: cudaDeviceGetAttribute");
  if (major * 10 + minor < kFp8MmaComputeCapability) return ExpertGemm::F32Simt;
  return fp8GemmKernel(device) == Fp8GemmKernel::Wgmma ? ExpertGemm::TensorCoreWgmma : ExpertGemm::TensorCore;
}

Experts::Experts(int hidden, Activation act, std::vector<ExpertGroup> groups, Precision precision)
    : H_(hidden), act_(act), precision_(precision), groups_(std::move(groups)) {
  E_ = checkExpertGroups(hidden, act, groups_);
  checkExpertPrecision(precision_);
  state_ = std::vector<GroupState>(groups_.size());
  for (size_t g = 1; g < groups_.size(); ++g) state_[g].firstExpert = state_[g - 1].firstExpert + groups_[g - 1].count;
  int device = 0;
  checkCuda(cudaGetDevice(&device), "cuda::Experts: cudaGetDevice");
  gemm_ = expertGemm(precision_, device);
  stream_.open();
  if (gemm_ != ExpertGemm::F32Simt) allocateTensorCoreWeights();
  counts_.assign(size_t(E_), 0);
  offsets_.assign(size_t(E_) + 1, 0);
}

int Experts::innerAlign() const { return precision_.experts == Precision::Experts::Fp8 ? 16 : 8; }

void Experts::allocateTensorCoreWeights() {
  const int align = innerAlign();
  const int Hp = int(roundUp(H_, align));
  for (size_t g = 0; g < groups_.size(); ++g) {
    GroupState& s = state_[g];
    const int count = groups_[g].count, F = groups_[g].ffn, Fp = int(roundUp(F, align));
    const size_t size = size_t(count) * Fp * Hp;
    const auto zeroed = [&](TensorCoreWeight& t) {
      uint16_t* bits = t.bf16.reserve(size, "bf16 weight operand");
      checkCuda(cudaMemsetAsync(bits, 0, size * sizeof(uint16_t), stream_.get()),
                "cuda::Experts: cudaMemsetAsync of the bf16 weight operands");
    };
    zeroed(s.w1t);
    if (act_ == Activation::Swiglu) zeroed(s.w3t);
    zeroed(s.w2t);
    const auto rowMap = [&](int N, int Np, DeviceBuffer<int32_t>& device) {
      std::vector<int32_t> map(size_t(count) * N);
      for (int e = 0; e < count; ++e)
        for (int i = 0; i < N; ++i) map[size_t(e) * N + size_t(i)] = e * Np + i;
      stream_.upload(device.reserve(map.size(), "weight row map"), map.data(), map.size() * sizeof(int32_t),
                     "weight row map");
      stream_.synchronize("cudaStreamSynchronize after uploading a weight row map");
    };
    rowMap(F, Fp, s.weightRowsF);
    rowMap(H_, Hp, s.weightRowsH);
  }
}

void Experts::forwardWeights(size_t group, const float*& w1, const float*& w3, const float*& w2) {
  GroupState& s = state_[group];
  const bool swiglu = act_ == Activation::Swiglu;
  const ExpertGroup& grp = groups_[group];
  w1 = grp.w1;
  w3 = swiglu ? grp.w3 : nullptr;
  w2 = grp.w2;
  if (precision_.compute != Precision::Compute::Bf16) return;
  const int64_t size = int64_t(grp.count) * grp.ffn * H_;
  const bool fp8 = precision_.experts == Precision::Experts::Fp8;
  const auto lower = [&](const float* master, const uint64_t* version, uint64_t& seen, DeviceBuffer<float>& b,
                         DeviceBuffer<float>& f, int rows, int cols) {
    if (stale(version, seen)) {
      roundBf16(master, size, b.reserve(size_t(size), "bf16 weights"), stream_.get());
      if (fp8)
        fp8RoundTrip(master, grp.count, rows, cols, kFp8Block, fp8Codes_, fp8Scales_,
                     f.reserve(size_t(size), "fp8 weights"), stream_.get());
      seen = seenOf(version);
    }
    return static_cast<const float*>(fp8 ? f.get() : b.get());
  };
  w1 = lower(grp.w1, grp.w1Version, s.w1Seen, s.w1b, s.w1f, grp.ffn, H_);
  if (swiglu) w3 = lower(grp.w3, grp.w3Version, s.w3Seen, s.w3b, s.w3f, grp.ffn, H_);
  w2 = lower(grp.w2, grp.w2Version, s.w2Seen, s.w2b, s.w2f, H_, grp.ffn);
}

void Experts::forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
                      const float* weight, float* y) {
  checkExpertForward(x, T, n, weight, y);
  checkAssignments(T, E_, n, token, expert);
  haveForward_ = saved_ = false;
  T_ = T;
  n_ = n;
  counts_.assign(size_t(E_), 0);
  offsets_.assign(size_t(E_) + 1, 0);
  for (size_t g = 0; g < groups_.size(); ++g) state_[g].firstRow = state_[g].rows = 0;
  if (n == 0) {  // every token dropped: y stays as it is
    haveForward_ = saved_ = true;
    return;
  }

  // The plan: rows sorted by expert, then token, then assignment (cpu::planPermutation's order).
  const size_t rowsSize = size_t(n) * H_;
  int32_t* dToken = token_.reserve(size_t(n), "token");
  int32_t* dExpert = expert_.reserve(size_t(n), "expert");
  float* dWeight = weight_.reserve(size_t(n), "weight");
  stream_.upload(dToken, token, size_t(n) * sizeof(int32_t), "token");
  stream_.upload(dExpert, expert, size_t(n) * sizeof(int32_t), "expert");
  stream_.upload(dWeight, weight, size_t(n) * sizeof(float), "weight");

  int32_t* rowAssignment = rowAssignment_.reserve(size_t(n), "the row map");
  int32_t* expertStart = expertStart_.reserve(size_t(E_) + 1, "the expert offsets");
  int32_t* rowToken = rowToken_.reserve(size_t(n), "the row tokens");
  float* rowWeight = rowWeight_.reserve(size_t(n), "the row weights");
  int32_t* tokenRows = tokenRows_.reserve(size_t(n), "the token rows");
  int32_t* tokenStart = tokenStart_.reserve(size_t(T) + 1, "the token offsets");
  fillIota(rowAssignment, n, stream_.get());
  stableSortByKey(rowAssignment, dToken, T, n, sort_, stream_.get());
  stableSortByKey(rowAssignment, dExpert, E_, n, sort_, stream_.get());
  segmentStarts(rowAssignment, dExpert, n, E_, expertStart, stream_.get());
  gatherAssignments(rowAssignment, dToken, dWeight, n, rowToken, rowWeight, stream_.get());
  // Combine's map: the rows of each token in ascending row order.
  fillIota(tokenRows, n, stream_.get());
  stableSortByKey(tokenRows, rowToken, T, n, sort_, stream_.get());
  segmentStarts(tokenRows, rowToken, n, T, tokenStart, stream_.get());
  stream_.download(offsets_.data(), expertStart, offsets_.size() * sizeof(int32_t), "the expert offsets");
  stream_.synchronize("cudaStreamSynchronize after planning the permutation");
  for (int e = 0; e < E_; ++e) counts_[size_t(e)] = offsets_[size_t(e) + 1] - offsets_[size_t(e)];

  activations_ = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    GroupState& s = state_[g];
    s.firstRow = offsets_[size_t(s.firstExpert)];
    s.rows = offsets_[size_t(s.firstExpert + groups_[g].count)] - s.firstRow;
    s.activationOffset = activations_;
    activations_ += s.rows * groups_[g].ffn;
  }
  xp_.reserve(rowsSize, "xp");
  yp_.reserve(rowsSize, "yp");
  a1_.reserve(size_t(activations_), "a1");
  if (act_ == Activation::Swiglu) a3_.reserve(size_t(activations_), "a3");
  h_.reserve(size_t(activations_), "h");
  permuteRows(x, H_, rowToken, n, xp_.get(), stream_.get());
  if (gemm_ != ExpertGemm::F32Simt) forwardTensorCore(n);
  else forwardSimt(n);

  addRowsToTokens(yp_.get(), rowWeight, tokenStart, tokenRows, T, H_, y, stream_.get());
  releaseForwardScratch();
  haveForward_ = saved_ = true;
}

void Experts::forwardSimt(int n) {
  const size_t rowsSize = size_t(n) * H_;
  float* xp = xp_.get();
  float* yp = yp_.get();
  float* a1 = a1_.get();
  float* a3 = act_ == Activation::Swiglu ? a3_.get() : nullptr;
  float* h = h_.get();
  const int32_t* expertStart = expertStart_.get();
  const bool low = precision_.compute == Precision::Compute::Bf16;
  const bool fp8 = precision_.experts == Precision::Experts::Fp8;
  const float* xForward = xp;
  if (fp8) {
    xForward = xpf_.reserve(rowsSize, "fp8 xp");
    fp8RoundTrip(xp, 1, n, H_, 1, fp8Codes_, fp8Scales_, xpf_.get(), stream_.get());
  }
  if (low) roundBf16(xp, int64_t(rowsSize), xp, stream_.get());  // the backward's x operand

  for (size_t g = 0; g < groups_.size(); ++g) {
    const ExpertGroup& grp = groups_[g];
    GroupState& s = state_[g];
    if (s.rows == 0) continue;
    const ExpertRows rows{expertStart + s.firstExpert, grp.count,
                          rowTiles(&counts_[size_t(s.firstExpert)], grp.count)};
    const int64_t at = s.activationOffset, hSize = s.rows * grp.ffn;
    const float *w1, *w3, *w2;
    forwardWeights(g, w1, w3, w2);
    expertUpProjection(act_, xForward + s.firstRow * H_, w1, w3, rows, grp.ffn, H_,
                       a1 + at, a3 ? a3 + at : nullptr, h + at, stream_.get());
    const float* hForward = h + at;
    if (fp8) {  // the down projection reads h in 1×128 blocks, the backward bf16(h)
      float* hf = hf_.reserve(size_t(activations_), "fp8 h") + at;
      fp8RoundTrip(h + at, 1, s.rows, grp.ffn, 1, fp8Codes_, fp8Scales_, hf, stream_.get());
      hForward = hf;
    }
    if (low) roundBf16(h + at, hSize, h + at, stream_.get());
    groupedGemmNT(hForward, w2, rows, H_, grp.ffn, yp + s.firstRow * H_, stream_.get());
  }
}

void Experts::tensorCoreWeights(size_t group) {
  GroupState& s = state_[group];
  const ExpertGroup& grp = groups_[group];
  const bool fp8 = precision_.experts == Precision::Experts::Fp8;
  const int align = innerAlign();
  // w [count, N, K] → its bf16 operand [count, Np, Kp] (both modes: the backward's, and the bf16
  // forward's) and, for fp8, its e4m3 codes [count·N, Kp] with the 128×128 block scales.
  const auto lower = [&](const float* w, const uint64_t* version, uint64_t& seen, int N, int K,
                         const DeviceBuffer<int32_t>& rowMap, TensorCoreWeight& t) {
    if (!stale(version, seen)) return;
    const int64_t matrixRows = int64_t(grp.count) * N;
    const int kPadded = int(roundUp(K, align));
    packRowsBf16(w, matrixRows, K, rowMap.get(), t.bf16.get(), kPadded, stream_.get());
    if (!fp8) {
      seen = seenOf(version);
      return;
    }
    float* scales = t.scales.reserve(size_t(grp.count * fp8BlockCount(N) * fp8BlockCount(K)), "fp8 weight scales");
    uint8_t* codes = t.codes.reserve(size_t(matrixRows) * kPadded, "fp8 weight operand");
    if (kPadded == K) {
      quantizeWeightsFp8(w, grp.count, N, K, Fp8Format::E4M3, codes, scales, stream_.get());
    } else {
      uint8_t* compact = wCodes_.get();  // reserved by forwardTensorCore
      quantizeWeightsFp8(w, grp.count, N, K, Fp8Format::E4M3, compact, scales, stream_.get());
      packRows(compact, matrixRows, K, nullptr, codes, kPadded, stream_.get());
    }
    seen = seenOf(version);
  };
  lower(grp.w1, grp.w1Version, s.w1Seen, grp.ffn, H_, s.weightRowsF, s.w1t);
  if (act_ == Activation::Swiglu) lower(grp.w3, grp.w3Version, s.w3Seen, grp.ffn, H_, s.weightRowsF, s.w3t);
  lower(grp.w2, grp.w2Version, s.w2Seen, H_, grp.ffn, s.weightRowsH, s.w2t);
}

void Experts::forwardTensorCore(int n) {
  const bool fp8 = precision_.experts == Precision::Experts::Fp8;
  const bool swiglu = act_ == Activation::Swiglu;
  const int align = innerAlign();  // the inner dimension the GEMM takes: a multiple of this
  // The up projection's inner dimension H, padded (upK), and its fp8 scale blocks; the down
  // projection's (F) likewise per group.
  const int upK = int(roundUp(H_, align));
  const int upBlocks = int(fp8BlockCount(H_));
  cudaStream_t stream = stream_.get();

  // The padded layout, group by group: expert e's rows from paddedStart_[e] of its group.
  paddedStart_.assign(size_t(E_) + 1, 0);
  int64_t maxA = 0, maxAScales = 0, maxActivations = 0, maxY = 0, maxCompactH = 0, maxCompactHScales = 0;
  int64_t maxWeightCodes = 0;  // fp8 weights whose K is padded are quantised here first
  for (size_t g = 0; g < groups_.size(); ++g) {
    GroupState& s = state_[g];
    const int F = groups_[g].ffn;
    if (fp8 && (H_ % align != 0 || F % align != 0))
      maxWeightCodes = std::max(maxWeightCodes, int64_t(groups_[g].count) * F * H_);
    int64_t padded = 0;
    for (int e = s.firstExpert; e < s.firstExpert + groups_[g].count; ++e) {
      paddedStart_[size_t(e)] = int32_t(padded);
      padded += roundUp(counts_[size_t(e)], kRowAlign);
    }
    s.paddedRows = padded;
    if (padded > INT32_MAX)
      throw Error(ErrorKind::Shape, "cuda::Experts: " + std::to_string(padded) +
                                        " padded rows in one group exceed the row index range (2³¹ − 1)");
    maxA = std::max(maxA, padded * std::max<int64_t>(upK, roundUp(F, align)));
    maxAScales = std::max(maxAScales, padded * std::max<int64_t>(upBlocks, fp8BlockCount(F)));
    maxActivations = std::max(maxActivations, padded * F);
    maxY = std::max(maxY, padded * H_);
    maxCompactH = std::max(maxCompactH, s.rows * F);
    maxCompactHScales = std::max(maxCompactHScales, s.rows * fp8BlockCount(F));
  }
  paddedStart_[size_t(E_)] = 0;
  int32_t* paddedStart = paddedStartDevice_.reserve(size_t(E_) + 1, "the padded expert offsets");
  int32_t* paddedRow = paddedRow_.reserve(size_t(n), "the padded row map");
  stream_.upload(paddedStart, paddedStart_.data(), paddedStart_.size() * sizeof(int32_t), "the padded expert offsets");
  paddedRowMap(expertStart_.get(), paddedStart, E_, n, paddedRow, stream);

  // Scratch, reserved before the first launch that uses it (the groups reuse it in stream order).
  uint16_t* aBf16 = fp8 ? nullptr : aBf16_.reserve(size_t(maxA), "the bf16 A operand");
  uint8_t* aCodes = fp8 ? aCodes_.reserve(size_t(maxA), "the fp8 A operand") : nullptr;
  float* aScales = fp8 ? aScales_.reserve(size_t(maxAScales), "the fp8 A scales") : nullptr;
  float* a1Pad = a1Pad_.reserve(size_t(maxActivations), "padded a1");
  float* a3Pad = swiglu ? a3Pad_.reserve(size_t(maxActivations), "padded a3") : nullptr;
  float* hPad = swiglu && !fp8 ? hPad_.reserve(size_t(maxActivations), "padded h") : nullptr;
  float* yPad = yPad_.reserve(size_t(maxY), "padded yp");
  uint8_t* hCodes = fp8 ? hCodes_.reserve(size_t(maxCompactH), "fp8 h codes") : nullptr;
  float* hScales = fp8 ? hScales_.reserve(size_t(maxCompactHScales), "fp8 h scales") : nullptr;
  wCodes_.reserve(size_t(maxWeightCodes), "fp8 weight codes");

  float* xp = xp_.get();
  const size_t rowsSize = size_t(n) * H_;
  uint8_t* xCodes = nullptr;
  float* xScales = nullptr;
  if (fp8) {  // x rows in 1×128 blocks, from the f32 values
    xCodes = xCodes_.reserve(rowsSize, "fp8 x codes");
    xScales = xScales_.reserve(size_t(n) * upBlocks, "fp8 x scales");
    quantizeActivationsFp8(xp, n, H_, Fp8Format::E4M3, xCodes, xScales, stream);
  }
  roundBf16(xp, int64_t(rowsSize), xp, stream);  // the backward's x operand (and bf16's forward one)

  for (size_t g = 0; g < groups_.size(); ++g) {
    const ExpertGroup& grp = groups_[g];
    GroupState& s = state_[g];
    if (s.rows == 0) continue;
    const int F = grp.ffn, downK = int(roundUp(F, align)), downBlocks = int(fp8BlockCount(F));
    const int32_t* rowMap = paddedRow + s.firstRow;
    const int64_t at = s.activationOffset;
    tensorCoreWeights(g);
    const int32_t* counts = &counts_[size_t(s.firstExpert)];
    float* a1 = a1_.get() + at;
    float* a3 = swiglu ? a3_.get() + at : nullptr;
    float* h = h_.get() + at;

    if (fp8) {
      packRows(xCodes + s.firstRow * H_, s.rows, H_, rowMap, aCodes, upK, stream);
      packRows(xScales + s.firstRow * upBlocks, s.rows, upBlocks, rowMap, aScales, upBlocks, stream);
      const auto up = [&](const TensorCoreWeight& w, float* out) {
        std::vector<Fp8GemmGroup> gemm(size_t(grp.count));
        for (int e = 0; e < grp.count; ++e)
          gemm[size_t(e)] = Fp8GemmGroup{counts[e], F, upK, w.codes.get() + int64_t(e) * F * upK,
                                         w.scales.get() + int64_t(e) * fp8BlockCount(F) * upBlocks};
        groupedGemmFp8(aCodes, upK, aScales, upBlocks, gemm, out, F, stream);
      };
      up(s.w1t, a1Pad);
      if (swiglu) up(s.w3t, a3Pad);
    } else {
      packRowsBf16(xp + s.firstRow * H_, s.rows, H_, rowMap, aBf16, upK, stream);
      // n = F: the first F of each expert's downK rows of the bf16 operand.
      std::vector<Bf16GemmGroup> gemm = bf16Groups(counts, grp.count, downK, upK, s.w1t.bf16.get());
      for (int e = 0; e < grp.count; ++e) {
        gemm[size_t(e)].n = F;
        if (swiglu) gemm[size_t(e)].w3 = s.w3t.bf16.get() + int64_t(e) * downK * upK;
      }
      if (swiglu) groupedGemmBf16Swiglu(aBf16, upK, gemm, hPad, a1Pad, a3Pad, F, stream);
      else groupedGemmBf16(aBf16, upK, gemm, a1Pad, F, stream);
    }
    unpackUpProjection(act_, a1Pad, a3Pad, hPad, F, rowMap, s.rows, F, a1, a3, h, stream);

    if (fp8) {  // the down projection reads h in 1×128 blocks, the backward bf16(h)
      quantizeActivationsFp8(h, s.rows, F, Fp8Format::E4M3, hCodes, hScales, stream);
      packRows(hCodes, s.rows, F, rowMap, aCodes, downK, stream);
      packRows(hScales, s.rows, downBlocks, rowMap, aScales, downBlocks, stream);
      roundBf16(h, s.rows * F, h, stream);
      std::vector<Fp8GemmGroup> gemm(size_t(grp.count));
      for (int e = 0; e < grp.count; ++e)
        gemm[size_t(e)] = Fp8GemmGroup{counts[e], H_, downK, s.w2t.codes.get() + int64_t(e) * H_ * downK,
                                       s.w2t.scales.get() + int64_t(e) * upBlocks * downBlocks};
      groupedGemmFp8(aCodes, downK, aScales, downBlocks, gemm, yPad, H_, stream);
    } else {
      roundBf16(h, s.rows * F, h, stream);
      packRowsBf16(h, s.rows, F, rowMap, aBf16, downK, stream);
      std::vector<Bf16GemmGroup> gemm = bf16Groups(counts, grp.count, upK, downK, s.w2t.bf16.get());
      for (Bf16GemmGroup& G : gemm) G.n = H_;  // the first H of each expert's upK rows
      groupedGemmBf16(aBf16, downK, gemm, yPad, H_, stream);
    }
    unpackRows(yPad, H_, rowMap, s.rows, H_, yp_.get() + s.firstRow * H_, stream);
  }
}

void Experts::backward(const float* dy, float* dx, float* dWeight) {
  if (!saved_)
    throw Error(ErrorKind::Argument, "Experts.backward: no forward to differentiate");
  const int n = n_;
  if (n == 0) {
    saved_ = false;
    return;
  }
  if (!dy) throw Error(ErrorKind::Argument, "Experts.backward: dy must not be null");

  const size_t ySize = size_t(T_) * H_, rowsSize = size_t(n) * H_;
  const float* dDy = dy;
  if (precision_.compute == Precision::Compute::Bf16) {  // the caller's dy stays as it is
    float* rounded = dy_.reserve(ySize, "bf16 dy");
    roundBf16(dy, int64_t(ySize), rounded, stream_.get());
    dDy = rounded;
  }
  float* dyp = dyp_.reserve(rowsSize, "dyp");
  unpermuteBackward(dDy, H_, rowToken_.get(), rowWeight_.get(), yp_.get(), rowAssignment_.get(),
                    n, dyp, dWeight, stream_.get());

  float* dxp = dx ? dxp_.reserve(rowsSize, "dxp") : nullptr;
  if (gemm_ != ExpertGemm::F32Simt) backwardTensorCore(dDy, dxp);
  else backwardSimt(dxp);
  if (dx) addRowsToTokens(dxp, nullptr, tokenStart_.get(), tokenRows_.get(), T_, H_, dx, stream_.get());
  releaseBackward();
  saved_ = false;
}

void Experts::releaseForwardScratch() {
  for (DeviceBuffer<float>* b : {&weight_, &xpf_, &hf_, &fp8Scales_, &aScales_, &xScales_, &hScales_, &a1Pad_, &a3Pad_,
                                 &hPad_, &yPad_})
    b->release();
  for (DeviceBuffer<int32_t>* b : {&token_, &expert_, &paddedStartDevice_}) b->release();
  for (DeviceBuffer<uint8_t>* b : {&fp8Codes_, &aCodes_, &xCodes_, &hCodes_, &wCodes_}) b->release();
  aBf16_.release();
  sort_.release();
}

void Experts::releaseBackward() {
  for (DeviceBuffer<float>* b : {&dy_, &dyp_, &dxp_, &da1_, &da3_, &dyRows_, &gPad_, &dxPad_, &dwPad_, &xp_,
                                 &yp_, &rowWeight_, &a1_, &a3_, &h_})
    b->release();
  for (DeviceBuffer<uint16_t>* b : {&operandH_, &operandF1_, &operandF3_}) b->release();
  for (DeviceBuffer<int32_t>* b : {&rowAssignment_, &rowToken_, &expertStart_, &tokenRows_, &tokenStart_, &paddedRow_})
    b->release();
}

void Experts::backwardSimt(float* dxp) {
  const bool low = precision_.compute == Precision::Compute::Bf16;
  float* dyp = dyp_.get();
  float* da1 = da1_.reserve(size_t(activations_), "da1");
  float* da3 = act_ == Activation::Swiglu ? da3_.reserve(size_t(activations_), "da3") : nullptr;
  const float* xp = xp_.get();
  cudaStream_t stream = stream_.get();
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ExpertGroup& grp = groups_[g];
    GroupState& s = state_[g];
    if (s.rows == 0) continue;
    const ExpertRows rows{expertStart_.get() + s.firstExpert, grp.count,
                          rowTiles(&counts_[size_t(s.firstExpert)], grp.count)};
    const int64_t at = s.activationOffset;
    float* dypG = dyp + s.firstRow * H_;
    const float* xpG = xp + s.firstRow * H_;
    float* da3G = da3 ? da3 + at : nullptr;
    const float* w1 = low ? s.w1b.get() : grp.w1;
    const float* w3 = low ? s.w3b.get() : grp.w3;
    const float* w2 = low ? s.w2b.get() : grp.w2;

    expertActivationBackward(act_, dypG, w2, rows, H_, grp.ffn, a1_.get() + at,
                             da3 ? a3_.get() + at : nullptr, da1 + at, da3G, stream);
    if (low) {  // the remaining GEMMs read bf16 operands: da1, da3 and weight·dy
      roundBf16(da1 + at, s.rows * grp.ffn, da1 + at, stream);
      if (da3G) roundBf16(da3G, s.rows * grp.ffn, da3G, stream);
      roundBf16(dypG, s.rows * H_, dypG, stream);
    }
    if (grp.g2)  // g2_e [H,F] += dyp_eᵀ · h_e
      groupedGemmTN(dypG, h_.get() + at, rows, H_, grp.ffn, grp.g2, stream);
    if (dxp) {  // dxp_e [rows,H] = da1_e · w1_e (+ da3_e · w3_e)
      float* dxpG = dxp + s.firstRow * H_;
      groupedGemmNN(da1 + at, w1, rows, grp.ffn, H_, false, dxpG, stream);
      if (da3G) groupedGemmNN(da3G, w3, rows, grp.ffn, H_, true, dxpG, stream);
    }
    if (grp.g1)  // g1_e [F,H] += da1_eᵀ · xp_e
      groupedGemmTN(da1 + at, xpG, rows, grp.ffn, H_, grp.g1, stream);
    if (da3G && grp.g3)  // g3_e [F,H] += da3_eᵀ · xp_e
      groupedGemmTN(da3G, xpG, rows, grp.ffn, H_, grp.g3, stream);
  }
}

void Experts::backwardTensorCore(const float* dy, float* dxp) {
  const bool swiglu = act_ == Activation::Swiglu;
  const int align = innerAlign(), Hp = int(roundUp(H_, align));
  cudaStream_t stream = stream_.get();
  int64_t maxPadded = 0, maxFp = 0, maxWeight = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const int64_t Fp = roundUp(groups_[g].ffn, align);
    maxPadded = std::max(maxPadded, state_[g].paddedRows);
    maxFp = std::max(maxFp, Fp);
    maxWeight = std::max(maxWeight, int64_t(groups_[g].count) * Fp * Hp);
  }
  // Scratch in the padded layout, reused group after group in stream order. The H-wide bf16
  // operand holds dy rows, then weight·dy rows, then x rows; the first F-wide one h, then da1.
  float* dyRows = dyRows_.reserve(size_t(n_) * H_, "dy rows");
  uint16_t* operandH = operandH_.reserve(size_t(maxPadded * Hp), "the H-wide bf16 operand");
  uint16_t* operandF1 = operandF1_.reserve(size_t(maxPadded * maxFp), "the F-wide bf16 operand");
  uint16_t* operandF3 = swiglu ? operandF3_.reserve(size_t(maxPadded * maxFp), "the bf16 da3 operand") : nullptr;
  float* gPad = gPad_.reserve(size_t(maxPadded * maxFp), "padded g");
  float* dxPad = dxp ? dxPad_.reserve(size_t(maxPadded * Hp), "padded dxp") : nullptr;
  float* dwPad = dwPad_.reserve(size_t(maxWeight), "padded weight gradient");
  permuteRows(dy, H_, rowToken_.get(), n_, dyRows, stream);

  for (size_t g = 0; g < groups_.size(); ++g) {
    const ExpertGroup& grp = groups_[g];
    GroupState& s = state_[g];
    if (s.rows == 0) continue;
    const int F = grp.ffn, Fp = int(roundUp(F, align));
    const int32_t* rowMap = paddedRow_.get() + s.firstRow;
    const int32_t* counts = &counts_[size_t(s.firstExpert)];
    const int64_t at = s.activationOffset;
    // dW [count, N, K] += dOutᵀ · a, through the padded [count, Np, Kp] product.
    const auto weightGradient = [&](float* gradient, const uint16_t* dOut, int Np, const uint16_t* a, int Kp,
                                    const DeviceBuffer<int32_t>& weightRows, int N, int K) {
      std::vector<float*> dW(size_t(grp.count));
      for (int e = 0; e < grp.count; ++e) dW[size_t(e)] = dwPad + int64_t(e) * Np * Kp;
      groupedGemmBf16TN(dOut, Np, a, Kp, bf16Groups(counts, grp.count, Np, Kp, nullptr), dW, false, stream);
      addUnpackedRows(dwPad, Kp, weightRows.get(), int64_t(grp.count) * N, K, gradient, stream);
    };

    // g = dy[token] · w2_e, unweighted (the weight enters in the activation backward)
    packRowsBf16(dyRows + s.firstRow * H_, s.rows, H_, rowMap, operandH, Hp, stream);
    groupedGemmBf16NN(operandH, Hp, bf16Groups(counts, grp.count, Hp, Fp, s.w2t.bf16.get()), gPad, Fp, false,
                      stream);
    if (grp.g2) {  // g2_e [H,F] += bf16(weight·dy)_eᵀ · h_e
      packRowsBf16(dyp_.get() + s.firstRow * H_, s.rows, H_, rowMap, operandH, Hp, stream);
      packRowsBf16(h_.get() + at, s.rows, F, rowMap, operandF1, Fp, stream);
      weightGradient(grp.g2, operandH, Hp, operandF1, Fp, s.weightRowsH, H_, F);
    }
    packActivationBackward(act_, gPad, Fp, rowMap, s.rows, F, rowWeight_.get() + s.firstRow, a1_.get() + at,
                           swiglu ? a3_.get() + at : nullptr, operandF1, operandF3, stream);
    if (dxp) {  // dxp_e [rows,H] = da1_e · w1_e (+ da3_e · w3_e)
      groupedGemmBf16NN(operandF1, Fp, bf16Groups(counts, grp.count, Fp, Hp, s.w1t.bf16.get()), dxPad, Hp, false,
                        stream);
      if (swiglu)
        groupedGemmBf16NN(operandF3, Fp, bf16Groups(counts, grp.count, Fp, Hp, s.w3t.bf16.get()), dxPad, Hp, true,
                          stream);
      unpackRows(dxPad, Hp, rowMap, s.rows, H_, dxp + s.firstRow * H_, stream);
    }
    if (grp.g1 || (swiglu && grp.g3)) packRowsBf16(xp_.get() + s.firstRow * H_, s.rows, H_, rowMap, operandH, Hp, stream);
    if (grp.g1)  // g1_e [F,H] += da1_eᵀ · xp_e
      weightGradient(grp.g1, operandF1, Fp, operandH, Hp, s.weightRowsF, F, H_);
    if (swiglu && grp.g3)  // g3_e [F,H] += da3_eᵀ · xp_e
      weightGradient(grp.g3, operandF3, Fp, operandH, Hp, s.weightRowsF, F, H_);
  }
}

int64_t Experts::flops(int e) const {
  checkExpertIndex(e, E_);
  if (!haveForward_) return 0;
  size_t g = 0;
  while (e >= state_[g].firstExpert + groups_[g].count) ++g;
  return expertForwardFlops(counts_[size_t(e)], H_, groups_[g].ffn, act_);
}

}  // namespace moekit::cuda
