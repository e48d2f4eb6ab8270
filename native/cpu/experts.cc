#include "experts.h"

#include <string>

#include "../core/activation.h"
#include "../core/errors.h"
#include "../core/fp8_blocks.h"
#include "../core/precision.h"
#include "../layer/expert_common.h"
#include "grouped_gemm.h"
#include "precision_operands.h"
#include "thread_pool.h"

namespace moekit::cpu {

namespace {

// Chunks of the parallel loops, fixed so results do not depend on the thread count: elements of
// the activation, rows of the backward's row pass.
constexpr int64_t kElementGrain = 1 << 14;
constexpr int64_t kRowGrain = 16;

// X1 activation, h = act(a1) (⊙ a3 for swiglu), over `count` elements (core/activation.h). A pass
// of its own: in the GEMM's epilogue it measured slower (README, CPU speed), as expf dominates it.
void activate(Activation act, const float* a1, const float* a3, float* h, int64_t count) {
  parallelFor(0, count, kElementGrain, [&](int64_t begin, int64_t end) {
    switch (act) {
      case Activation::Swiglu:
        for (int64_t i = begin; i < end; ++i) h[i] = activation::swiglu(a1[i], a3[i]);
        break;
      case Activation::Gelu:
        for (int64_t i = begin; i < end; ++i) h[i] = activation::gelu(a1[i]);
        break;
      case Activation::Relu:
        for (int64_t i = begin; i < end; ++i) h[i] = activation::relu(a1[i]);
        break;
    }
  });
}

// g[r] · h[r] over F, summed in double: dy_t · E_e(x_t) when g = dy[token]·w2 and E_e = h·w2ᵀ.
float rowDot(const float* g, const float* h, int F) {
  double acc = 0.0;
  for (int f = 0; f < F; ++f) acc += double(g[f]) * double(h[f]);
  return float(acc);
}

// dRowWeight[r] = rowDot(g[r], h[r]) for rows [0, rows) ([rows,F] each).
void rowDots(int64_t rows, int F, const float* g, const float* h, float* dRowWeight) {
  parallelFor(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) dRowWeight[r] = rowDot(g + r * F, h + r * F, F);
  });
}

// out [rows,H] row r = roundBf16(rowWeight[r] · dy[rowToken[r]]): dW2's bf16 operand in the low
// modes (the product of a bf16 dy and an f32 weight is rounded like every other GEMM operand).
void weightedRowsBf16(const float* dy, int H, const int32_t* rowToken, const float* rowWeight, int64_t rows,
                      float* out) {
  parallelFor(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = dy + int64_t(rowToken[r]) * H;
      for (int c = 0; c < H; ++c) out[r * H + c] = moekit::roundBf16(rowWeight[r] * in[c]);
    }
  });
}

// The row pass of the backward over rows [0, rows) of one group, g [rows,F] = dy[token]·w2 in
// (unweighted), overwritten with da1:
//   dRowWeight[r] = rowDot(g[r], h[r])               (when not null)
//   dh = rowWeight[r] · g[r] → da1 (and da3 for swiglu) through core/activation.h
void rowBackward(Activation act, int64_t rows, int F, const float* a1, const float* a3,
                 const float* h, const float* rowWeight, float* g, float* da3, float* dRowWeight) {
  parallelFor(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t at = r * F;
      float* gr = g + at;
      if (dRowWeight) dRowWeight[r] = rowDot(gr, h + at, F);
      const float w = rowWeight[r];
      switch (act) {
        case Activation::Swiglu:
          for (int f = 0; f < F; ++f)
            activation::swigluBackward(a1[at + f], a3[at + f], w * gr[f], gr[f], da3[at + f]);
          break;
        case Activation::Gelu:
          for (int f = 0; f < F; ++f) gr[f] = w * gr[f] * activation::geluGrad(a1[at + f]);
          break;
        case Activation::Relu:
          for (int f = 0; f < F; ++f) gr[f] = activation::reluBackward(a1[at + f], w * gr[f]);
          break;
      }
    }
  });
}

// Weights [count,rows,cols] as the mode's GEMMs read them: bf16 into `b` (the backward's), and
// into `f` the forward's (fp8: 128×128 blocks; bf16: not written, the forward reads `b`).
void lowWeights(const float* w, int count, int rows, int cols, bool fp8, std::vector<float>& b,
                std::vector<float>& f) {
  const int64_t n = int64_t(count) * rows * cols;
  b.resize(size_t(n));
  roundBf16(w, n, b.data());
  if (fp8) {
    f.resize(size_t(n));
    fp8RoundTrip(w, count, rows, cols, kFp8Block, f.data());
  }
}

}  // namespace

Experts::Experts(int hidden, Activation act, std::vector<ExpertGroup> groups, Precision precision)
    : H_(hidden), act_(act), precision_(precision), groups_(std::move(groups)) {
  E_ = checkExpertGroups(hidden, act, groups_);
  checkExpertPrecision(precision_);
  cache_.resize(groups_.size());
  for (size_t g = 1; g < groups_.size(); ++g) cache_[g].firstExpert = cache_[g - 1].firstExpert + groups_[g - 1].count;
}

void Experts::forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
                      const float* weight, float* y) {
  checkExpertForward(x, T, n, weight, y);
  haveForward_ = false;
  plan_ = planPermutation(T, E_, n, token, expert);  // validates token and expert
  T_ = T;

  // The experts read x's rows through the row map: the permute is fused into the GEMMs' packing
  // (no [n,H] permuted copy); x itself is kept for the backward.
  x_.assign(x, x + size_t(T) * H_);
  const bool low = precision_.compute == Precision::Compute::Bf16;
  const bool fp8 = precision_.experts == Precision::Experts::Fp8;
  if (fp8) {
    xf_.resize(x_.size());
    fp8RoundTrip(x, 1, T, H_, 1, xf_.data());
  }
  if (low) roundBf16(x_.data(), int64_t(x_.size()), x_.data());
  const float* xForward = fp8 ? xf_.data() : x_.data();
  rowWeight_.resize(size_t(n));
  for (int r = 0; r < n; ++r) rowWeight_[size_t(r)] = weight[plan_.rowAssignment[size_t(r)]];

  for (size_t g = 0; g < groups_.size(); ++g) {
    const ExpertGroup& grp = groups_[g];
    GroupCache& c = cache_[g];
    c.firstRow = plan_.offsets[size_t(c.firstExpert)];
    c.rows = plan_.offsets[size_t(c.firstExpert + grp.count)] - c.firstRow;
    const int32_t* rows = &plan_.counts[size_t(c.firstExpert)];
    const int32_t* rowMap = plan_.rowToken.data() + c.firstRow;
    const size_t size = size_t(c.rows) * grp.ffn;
    c.a1.resize(size);
    c.h.resize(size);
    if (act_ == Activation::Swiglu) c.a3.resize(size);
    const float *w1 = grp.w1, *w3 = grp.w3, *w2 = grp.w2;
    if (low) {
      const bool swiglu = act_ == Activation::Swiglu;
      lowWeights(grp.w1, grp.count, grp.ffn, H_, fp8, c.w1b, c.w1f);
      if (swiglu) lowWeights(grp.w3, grp.count, grp.ffn, H_, fp8, c.w3b, c.w3f);
      lowWeights(grp.w2, grp.count, H_, grp.ffn, fp8, c.w2b, c.w2f);
      w1 = fp8 ? c.w1f.data() : c.w1b.data();
      w3 = swiglu ? (fp8 ? c.w3f.data() : c.w3b.data()) : nullptr;
      w2 = fp8 ? c.w2f.data() : c.w2b.data();
    }
    groupedGemmNT(xForward, w1, rows, grp.count, c.rows, grp.ffn, H_, c.a1.data(), rowMap);
    if (act_ == Activation::Swiglu)
      groupedGemmNT(xForward, w3, rows, grp.count, c.rows, grp.ffn, H_, c.a3.data(), rowMap);
    activate(act_, c.a1.data(), c.a3.data(), c.h.data(), int64_t(size));
    const float* h = c.h.data();
    if (fp8) {  // the down projection reads h in 1×128 blocks; the backward bf16(h)
      c.hf.resize(size);
      fp8RoundTrip(c.h.data(), 1, c.rows, grp.ffn, 1, c.hf.data());
      h = c.hf.data();
    }
    if (low) roundBf16(c.h.data(), int64_t(size), c.h.data());
    groupedGemmNTCombine(h, w2, rows, grp.count, c.rows, H_, grp.ffn, rowMap,
                         rowWeight_.data() + c.firstRow, T, y);
  }
  haveForward_ = true;
}

void Experts::backward(const float* dy, float* dx, float* dWeight) {
  if (!haveForward_)
    throw Error(ErrorKind::Argument, "Experts.backward: no forward to differentiate");
  const int n = int(plan_.rowToken.size());
  if (n == 0) return;
  if (!dy) throw Error(ErrorKind::Argument, "Experts.backward: dy must not be null");

  if (dWeight) dRowWeight_.resize(size_t(n));
  const bool low = precision_.compute == Precision::Compute::Bf16;
  const bool fp8 = precision_.experts == Precision::Experts::Fp8;
  if (low) {
    dyLow_.resize(size_t(T_) * H_);
    roundBf16(dy, int64_t(dyLow_.size()), dyLow_.data());
    dy = dyLow_.data();
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ExpertGroup& grp = groups_[g];
    const GroupCache& c = cache_[g];
    if (c.rows == 0) continue;
    const int32_t* rows = &plan_.counts[size_t(c.firstExpert)];
    const int32_t* rowMap = plan_.rowToken.data() + c.firstRow;
    const size_t size = size_t(c.rows) * grp.ffn;
    da1_.resize(size);
    if (act_ == Activation::Swiglu) da3_.resize(size);
    const bool swiglu = act_ == Activation::Swiglu;
    const float* w1 = low ? c.w1b.data() : grp.w1;
    const float* w3 = !swiglu ? nullptr : low ? c.w3b.data() : grp.w3;
    const float* w2 = low ? c.w2b.data() : grp.w2;
    float* dRowWeight = dWeight ? dRowWeight_.data() + c.firstRow : nullptr;
    if (fp8 && dRowWeight) {  // dWeight from the fp8 forward's output (experts.h, Precision)
      gf_.resize(size);
      groupedGemmNTCombineBackward(dy, c.hf.data(), c.w2f.data(), rows, grp.count, c.rows, H_,
                                   grp.ffn, rowMap, nullptr, T_, gf_.data(), nullptr);
      rowDots(c.rows, grp.ffn, gf_.data(), c.hf.data(), dRowWeight);
    }
    const float* rowWeight = rowWeight_.data() + c.firstRow;
    groupedGemmNTCombineBackward(dy, c.h.data(), w2, rows, grp.count, c.rows, H_, grp.ffn,
                                 rowMap, rowWeight, T_, da1_.data(), low ? nullptr : grp.g2);
    if (low && grp.g2) {  // dW2 += bf16(weight·dy)ᵀ · h
      dyWeighted_.resize(size_t(c.rows) * H_);
      weightedRowsBf16(dy, H_, rowMap, rowWeight, c.rows, dyWeighted_.data());
      groupedGemmNTBackward(dyWeighted_.data(), c.h.data(), w2, rows, grp.count, c.rows, H_, grp.ffn,
                            nullptr, grp.g2);
    }
    rowBackward(act_, c.rows, grp.ffn, c.a1.data(), c.a3.data(), c.h.data(),
                rowWeight, da1_.data(), da3_.data(), fp8 ? nullptr : dRowWeight);
    if (low) {
      roundBf16(da1_.data(), int64_t(size), da1_.data());
      if (swiglu) roundBf16(da3_.data(), int64_t(size), da3_.data());
    }
    groupedGemmNTBackward(da1_.data(), x_.data(), w1, rows, grp.count, c.rows, grp.ffn, H_, dx,
                          grp.g1, rowMap);
    if (swiglu)
      groupedGemmNTBackward(da3_.data(), x_.data(), w3, rows, grp.count, c.rows, grp.ffn, H_,
                            dx, grp.g3, rowMap);
  }
  if (dWeight)
    for (int r = 0; r < n; ++r) dWeight[plan_.rowAssignment[size_t(r)]] = dRowWeight_[size_t(r)];
}

int64_t Experts::flops(int e) const {
  checkExpertIndex(e, E_);
  if (!haveForward_) return 0;
  size_t g = 0;
  while (e >= cache_[g].firstExpert + groups_[g].count) ++g;
  return expertForwardFlops(plan_.counts[size_t(e)], H_, groups_[g].ffn, act_);
}

}  // namespace moekit::cpu
