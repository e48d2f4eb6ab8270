#include "parallel_groups.h"

#include <algorithm>
#include <cstring>

#include "../core/shape.h"

namespace moekit {

std::function<void(int64_t*, size_t)> countReducer(const ParallelGroups& groups) {
  if (!groups.expert && !groups.data) return nullptr;
  return [expert = groups.expert, data = groups.data](int64_t* values, size_t n) {
    if (expert) expert->allReduce(values, int64_t(n), comm::ElemType::I64, comm::ReduceOp::Sum);
    if (data) data->allReduce(values, int64_t(n), comm::ElemType::I64, comm::ReduceOp::Sum);
  };
}

void allReduceBucket(const DeviceMemory& memory, comm::Communicator& comm, const std::vector<GradBuffer>& buffers) {
  int64_t total = 0;
  for (const GradBuffer& b : buffers) total += b.count;
  std::vector<float> bucket(static_cast<size_t>(total));
  int64_t at = 0;
  for (const GradBuffer& b : buffers) {
    memory.toHost(bucket.data() + at, b.data, size_t(b.count) * sizeof(float));
    at += b.count;
  }
  for (int64_t start = 0; start < total; start += kMaxElements)
    comm.allReduce(bucket.data() + start, std::min(kMaxElements, total - start), comm::ElemType::F32, comm::ReduceOp::Sum);
  at = 0;
  for (const GradBuffer& b : buffers) {
    memory.fromHost(b.data, bucket.data() + at, size_t(b.count) * sizeof(float));
    at += b.count;
  }
}

}  // namespace moekit
