#include "experts.h"

#include <string>

#include "../core/activation.h"
#include "../core/errors.h"
#include "../layer/expert_common.h"
#include "grouped_gemm.h"
#include "thread_pool.h"

namespace moekit::cpu {

namespace {

// X1 activation, h = act(a1) (⊙ a3 for swiglu), over `count` elements (core/activation.h).
// Elements per parallel chunk of the element-wise loops (fixed: results do not depend on threads).
constexpr int64_t kElementGrain = 1 << 14;

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

// dh → da1 (and da3 for swiglu).
void activateBackward(Activation act, const float* a1, const float* a3, const float* dh,
                      float* da1, float* da3, int64_t count) {
  parallelFor(0, count, kElementGrain, [&](int64_t begin, int64_t end) {
    switch (act) {
      case Activation::Swiglu:
        for (int64_t i = begin; i < end; ++i)
          activation::swigluBackward(a1[i], a3[i], dh[i], da1[i], da3[i]);
        break;
      case Activation::Gelu:
        for (int64_t i = begin; i < end; ++i) da1[i] = dh[i] * activation::geluGrad(a1[i]);
        break;
      case Activation::Relu:
        for (int64_t i = begin; i < end; ++i) da1[i] = activation::reluBackward(a1[i], dh[i]);
        break;
    }
  });
}

}  // namespace

Experts::Experts(int hidden, Activation act, std::vector<ExpertGroup> groups)
    : H_(hidden), act_(act), groups_(std::move(groups)) {
  E_ = checkExpertGroups(hidden, act, groups_);
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
  rowWeight_.resize(size_t(n));
  for (int r = 0; r < n; ++r) rowWeight_[size_t(r)] = weight[plan_.rowAssignment[size_t(r)]];

  yp_.resize(size_t(n) * H_);
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
    groupedGemmNT(x_.data(), grp.w1, rows, grp.count, c.rows, grp.ffn, H_, c.a1.data(), rowMap);
    if (act_ == Activation::Swiglu) {
      c.a3.resize(size);
      groupedGemmNT(x_.data(), grp.w3, rows, grp.count, c.rows, grp.ffn, H_, c.a3.data(), rowMap);
    }
    activate(act_, c.a1.data(), c.a3.data(), c.h.data(), int64_t(size));
    groupedGemmNT(c.h.data(), grp.w2, rows, grp.count, c.rows, H_, grp.ffn,
                  yp_.data() + c.firstRow * H_);
  }
  unpermuteRows(yp_.data(), n, H_, plan_.rowToken.data(), rowWeight_.data(), T, y);
  haveForward_ = true;
}

void Experts::backward(const float* dy, float* dx, float* dWeight) {
  if (!haveForward_)
    throw Error(ErrorKind::Argument, "Experts.backward: no forward to differentiate");
  const int n = int(plan_.rowToken.size());
  if (n == 0) return;
  if (!dy) throw Error(ErrorKind::Argument, "Experts.backward: dy must not be null");

  std::vector<float>& dyp = dyp_;
  std::vector<float>& dRowWeight = dRowWeight_;
  dyp.resize(size_t(n) * H_);
  if (dWeight) dRowWeight.resize(size_t(n));
  unpermuteRowsBackward(dy, T_, H_, plan_.rowToken.data(), rowWeight_.data(), yp_.data(), n,
                        dyp.data(), dWeight ? dRowWeight.data() : nullptr);
  if (dWeight)
    for (int r = 0; r < n; ++r) dWeight[plan_.rowAssignment[size_t(r)]] = dRowWeight[size_t(r)];

  std::vector<float>& dxp = dxp_;
  std::vector<float>& dh = dh_;
  std::vector<float>& da1 = da1_;
  std::vector<float>& da3 = da3_;
  std::vector<float>& dxp3 = dxp3_;
  dxp.resize(dx ? size_t(n) * H_ : 0);
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ExpertGroup& grp = groups_[g];
    const GroupCache& c = cache_[g];
    if (c.rows == 0) continue;
    const int32_t* rows = &plan_.counts[size_t(c.firstExpert)];
    const int32_t* rowMap = plan_.rowToken.data() + c.firstRow;
    float* dxg = dx ? dxp.data() + c.firstRow * H_ : nullptr;
    const size_t size = size_t(c.rows) * grp.ffn;
    dh.resize(size);
    da1.resize(size);
    groupedGemmNTBackward(dyp.data() + c.firstRow * H_, c.h.data(), grp.w2, rows, grp.count,
                          c.rows, H_, grp.ffn, dh.data(), grp.g2);
    if (act_ == Activation::Swiglu) da3.resize(size);
    activateBackward(act_, c.a1.data(), c.a3.data(), dh.data(), da1.data(), da3.data(),
                     int64_t(size));
    groupedGemmNTBackward(da1.data(), x_.data(), grp.w1, rows, grp.count, c.rows, grp.ffn, H_, dxg,
                          grp.g1, rowMap);
    if (act_ == Activation::Swiglu) {
      if (dxg) dxp3.resize(size_t(c.rows) * H_);
      groupedGemmNTBackward(da3.data(), x_.data(), grp.w3, rows, grp.count, c.rows, grp.ffn, H_,
                            dxg ? dxp3.data() : nullptr, grp.g3, rowMap);
      if (dxg)
        parallelFor(0, int64_t(dxp3.size()), kElementGrain, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) dxg[i] += dxp3[size_t(i)];
        });
    }
  }
  if (dx) permuteRowsBackward(dxp.data(), n, H_, plan_.rowToken.data(), T_, dx);
}

int64_t Experts::flops(int e) const {
  checkExpertIndex(e, E_);
  if (!haveForward_) return 0;
  size_t g = 0;
  while (e >= cache_[g].firstExpert + groups_[g].count) ++g;
  return expertForwardFlops(plan_.counts[size_t(e)], H_, groups_[g].ffn, act_);
}

}  // namespace moekit::cpu
