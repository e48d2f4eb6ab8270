#include "experts.h"

#include <string>

#include "../core/activation.h"
#include "../core/errors.h"
#include "../layer/expert_common.h"
#include "grouped_gemm.h"
#include "thread_pool.h"

namespace moekit::cpu {

namespace {

// Rows per parallel chunk of the backward's row pass (fixed: results do not depend on threads).
constexpr int64_t kRowGrain = 16;

// The row pass of the backward over rows [0, rows) of one group, g [rows,F] = dy[token]·w2 in
// (unweighted), overwritten with da1:
//   dRowWeight[r] = g[r] · h[r]                      (= dy_t · E_e(x_t), summed in double)
//   dh = rowWeight[r] · g[r] → da1 (and da3 for swiglu) through core/activation.h
void rowBackward(Activation act, int64_t rows, int F, const float* a1, const float* a3,
                 const float* h, const float* rowWeight, float* g, float* da3, float* dRowWeight) {
  parallelFor(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t at = r * F;
      float* gr = g + at;
      if (dRowWeight) {
        double acc = 0.0;
        for (int f = 0; f < F; ++f) acc += double(gr[f]) * double(h[at + f]);
        dRowWeight[r] = float(acc);
      }
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
    groupedGemmNTActivation(act_, x_.data(), grp.w1, grp.w3, rows, grp.count, c.rows, grp.ffn, H_,
                            c.a1.data(), c.a3.data(), c.h.data(), rowMap);
    groupedGemmNTCombine(c.h.data(), grp.w2, rows, grp.count, c.rows, H_, grp.ffn, rowMap,
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
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ExpertGroup& grp = groups_[g];
    const GroupCache& c = cache_[g];
    if (c.rows == 0) continue;
    const int32_t* rows = &plan_.counts[size_t(c.firstExpert)];
    const int32_t* rowMap = plan_.rowToken.data() + c.firstRow;
    const size_t size = size_t(c.rows) * grp.ffn;
    da1_.resize(size);
    if (act_ == Activation::Swiglu) da3_.resize(size);
    groupedGemmNTCombineBackward(dy, c.h.data(), grp.w2, rows, grp.count, c.rows, H_, grp.ffn,
                                 rowMap, rowWeight_.data() + c.firstRow, T_, da1_.data(), grp.g2);
    rowBackward(act_, c.rows, grp.ffn, c.a1.data(), c.a3.data(), c.h.data(),
                rowWeight_.data() + c.firstRow, da1_.data(), da3_.data(),
                dWeight ? dRowWeight_.data() + c.firstRow : nullptr);
    groupedGemmNTBackward(da1_.data(), x_.data(), grp.w1, rows, grp.count, c.rows, grp.ffn, H_, dx,
                          grp.g1, rowMap);
    if (act_ == Activation::Swiglu)
      groupedGemmNTBackward(da3_.data(), x_.data(), grp.w3, rows, grp.count, c.rows, grp.ffn, H_,
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
