#include "expert_parallel.h"

#include <cmath>
#include <cstring>
#include <string>

#include "../core/errors.h"
#include "expert_common.h"

namespace moekit {

namespace {

std::string str(int64_t v) { return std::to_string(v); }

uint32_t bitsOf(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

float floatOf(uint32_t bits) {
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

}  // namespace

ExpertParallel::ExpertParallel(comm::Communicator& comm, int ranksPerNode, int hidden, Activation activation,
                               std::vector<int> groupSizes, std::vector<int> groupFfn,
                               std::unique_ptr<ExpertStage> local)
    : comm_(comm),
      exchange_(comm, ranksPerNode),
      H_(hidden),
      act_(activation),
      groupSizes_(std::move(groupSizes)),
      groupFfn_(std::move(groupFfn)),
      local_(std::move(local)) {
  const int P = comm.size();
  if (!local_) throw Error(ErrorKind::Argument, "ExpertParallel: local: expected the backend's expert stage, got null");
  if (hidden < 1) throw Error(ErrorKind::Shape, "ExpertParallel: hidden: expected ≥ 1, got " + str(hidden));
  if (groupSizes_.empty() || groupFfn_.size() != groupSizes_.size())
    throw Error(ErrorKind::Config, "experts: expected at least one group, each with its ffnHidden");
  groupStart_.assign(1, 0);
  localStart_.assign(1, 0);
  for (size_t g = 0; g < groupSizes_.size(); ++g) {
    const int count = groupSizes_[g];
    if (count < 1 || count % P != 0)
      throw Error(ErrorKind::Config, "experts[" + str(int64_t(g)) + "].count: expected a positive multiple of the expert-parallel size " +
                                         str(P) + " (parallel.expert), got " + str(count));
    groupStart_.push_back(groupStart_.back() + count);
    localStart_.push_back(localStart_.back() + count / P);
    for (int e = 0; e < count; ++e) groupOf_.push_back(int(g));
  }
  E_ = groupStart_.back();
}

int ExpertParallel::owner(int expert) const {
  const int g = groupOf_[size_t(expert)];
  return (expert - groupStart_[size_t(g)]) / (groupSizes_[size_t(g)] / comm_.size());
}

int ExpertParallel::localIndex(int expert) const {
  const int g = groupOf_[size_t(expert)];
  return localStart_[size_t(g)] + (expert - groupStart_[size_t(g)]) % (groupSizes_[size_t(g)] / comm_.size());
}

void ExpertParallel::forward(const float* x, int T, int n, const int32_t* token, const int32_t* expert,
                             const float* weight, float* y) {
  checkExpertForward(x, T, n, weight, y);
  for (int a = 0; a < n; ++a) {
    if (token[a] < 0 || token[a] >= T)
      throw Error(ErrorKind::Argument, "Experts.forward: token[" + str(a) + "]: expected a token in [0, " + str(T) + "), got " +
                                           str(token[a]));
    if (expert[a] < 0 || expert[a] >= E_)
      throw Error(ErrorKind::Argument, "Experts.forward: expert[" + str(a) + "]: expected an expert in [0, " + str(E_) +
                                           "), got " + str(expert[a]));
  }
  haveForward_ = false;
  const int H = H_, width = H + 2;
  token_.assign(token, token + n);
  expert_.assign(expert, expert + n);
  rows_.assign(size_t(E_), 0);
  dest_.resize(size_t(n));
  send_.resize(size_t(n) * width);
  for (int a = 0; a < n; ++a) {
    ++rows_[size_t(expert[a])];
    dest_[size_t(a)] = owner(expert[a]);
    uint32_t* row = &send_[size_t(a) * width];
    row[0] = uint32_t(localIndex(expert[a]));
    row[1] = bitsOf(weight[a]);
    std::memcpy(row + 2, x + size_t(token[a]) * H, size_t(H) * sizeof(float));
  }
  exchange_.dispatch(dest_.data(), n, send_.data(), width, recv_);

  // The owner's side: one row per received assignment, computed by the local stage.
  const int R = exchange_.received();
  localX_.resize(size_t(R) * H);
  localToken_.resize(size_t(R));
  localExpert_.resize(size_t(R));
  localWeight_.resize(size_t(R));
  for (int i = 0; i < R; ++i) {
    const uint32_t* row = &recv_[size_t(i) * width];
    localToken_[size_t(i)] = i;
    localExpert_[size_t(i)] = int32_t(row[0]);
    localWeight_[size_t(i)] = floatOf(row[1]);
    std::memcpy(&localX_[size_t(i) * H], row + 2, size_t(H) * sizeof(float));
  }
  localOut_.assign(size_t(R) * H, 0.0f);
  local_->forward(localX_.data(), R, R, localToken_.data(), localExpert_.data(), localWeight_.data(), localOut_.data());

  // Back to the origins, added into y in assignment order.
  send_.resize(size_t(R) * H);
  if (R > 0) std::memcpy(send_.data(), localOut_.data(), size_t(R) * H * sizeof(float));
  exchange_.reverse(send_.data(), H, recv_);
  returned_.resize(size_t(n) * H);
  if (n > 0) std::memcpy(returned_.data(), recv_.data(), size_t(n) * H * sizeof(float));
  for (int a = 0; a < n; ++a) {
    const float* row = &returned_[size_t(a) * H];
    float* out = y + size_t(token[a]) * H;
    for (int h = 0; h < H; ++h) out[h] += row[h];
  }
  haveForward_ = true;
}

void ExpertParallel::backward(const float* dy, float* dx, float* dWeight) {
  if (!haveForward_) throw Error(ErrorKind::Argument, "Experts.backward: no forward to differentiate");
  const int H = H_, n = int(token_.size());
  if (n > 0 && !dy) throw Error(ErrorKind::Argument, "Experts.backward: dy must not be null");
  send_.resize(size_t(n) * H);
  for (int a = 0; a < n; ++a)
    std::memcpy(&send_[size_t(a) * H], dy + size_t(token_[size_t(a)]) * H, size_t(H) * sizeof(float));
  exchange_.forward(send_.data(), H, recv_);

  // The owner's side: the local stage's backward over the rows it computed.
  const int R = exchange_.received();
  std::vector<float>& localDy = localX_;  // the forward's inputs are not needed any more
  localDy.resize(size_t(R) * H);
  if (R > 0) std::memcpy(localDy.data(), recv_.data(), size_t(R) * H * sizeof(float));
  localDx_.assign(size_t(R) * H, 0.0f);
  localDWeight_.assign(size_t(R), 0.0f);
  local_->backward(localDy.data(), localDx_.data(), localDWeight_.data());
  const int width = H + 1;
  send_.resize(size_t(R) * width);
  for (int i = 0; i < R; ++i) {
    std::memcpy(&send_[size_t(i) * width], &localDx_[size_t(i) * H], size_t(H) * sizeof(float));
    send_[size_t(i) * width + H] = bitsOf(localDWeight_[size_t(i)]);
  }
  exchange_.reverse(send_.data(), width, recv_);

  for (int a = 0; a < n; ++a) {
    const uint32_t* row = &recv_[size_t(a) * width];
    if (dx) {
      float* out = dx + size_t(token_[size_t(a)]) * H;
      for (int h = 0; h < H; ++h) out[h] += floatOf(row[h]);
    }
    if (dWeight) dWeight[a] = floatOf(row[H]);
  }
}

int64_t ExpertParallel::flops(int expert) const {
  checkExpertIndex(expert, E_);
  if (!haveForward_) return 0;
  return expertForwardFlops(rows_[size_t(expert)], H_, groupFfn_[size_t(groupOf_[size_t(expert)])], act_);
}

int ExpertParallel::firstNonFiniteExpert(int token) const {
  for (size_t a = 0; a < token_.size(); ++a) {
    if (token_[a] != token) continue;
    const float* row = &returned_[a * size_t(H_)];
    for (int h = 0; h < H_; ++h)
      if (!std::isfinite(row[h])) return expert_[a];
  }
  return -1;
}

}  // namespace moekit
