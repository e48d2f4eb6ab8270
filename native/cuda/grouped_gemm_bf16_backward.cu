// The bf16 backward GEMMs' entry points (grouped_gemm_bf16_backward.h: layout, math,
// requirements): the argument checks, then one launch of the kernel of
// grouped_gemm_bf16_backward.cuh (kernel, operand layouts, thread mapping) with the NN or TN
// layout. CPU reference: test/cuda/grouped_gemm_bf16_backward_test.cc (bf16 decode, float64 sums).
#include "grouped_gemm_bf16_backward.h"

#include <string>

#include "../core/errors.h"
#include "grouped_gemm_bf16_backward.cuh"
#include "padded_groups.h"

namespace moekit::cuda {

namespace {

[[noreturn]] void fail(ErrorKind kind, const char* api, const std::string& message) {
  throw Error(kind, std::string(api) + ": " + message);
}

void checkLeading(const char* api, const char* name, int ld) {
  if (ld <= 0 || ld % 8 != 0)
    fail(ErrorKind::Shape, api, std::string(name) + ": expected a positive multiple of 8, got " + std::to_string(ld));
}

// The group shapes both layouts share; kLimit / kName bound k_g (NN: ldDA, TN: lda). Returns Mpad.
int64_t checkGroups(const char* api, const std::vector<Bf16GemmGroup>& groups, int ldDOut, int kLimit,
                    const char* kName) {
  for (size_t g = 0; g < groups.size(); ++g) {
    const Bf16GemmGroup& G = groups[g];
    const std::string name = "groups[" + std::to_string(g) + "]";
    if (G.rows < 0) fail(ErrorKind::Shape, api, name + ".rows: expected ≥ 0, got " + std::to_string(G.rows));
    if (G.n <= 0 || G.n % 8 != 0 || G.n > ldDOut) {
      fail(ErrorKind::Shape, api, name + ".n: expected a positive multiple of 8 that is at most ldDOut = " +
                                      std::to_string(ldDOut) + ", got " + std::to_string(G.n));
    }
    if (G.k <= 0 || G.k % 8 != 0 || G.k > kLimit) {
      fail(ErrorKind::Shape, api, name + ".k: expected a positive multiple of 8 that is at most " + kName + " = " +
                                      std::to_string(kLimit) + ", got " + std::to_string(G.k));
    }
  }
  return paddedRowStarts<kBf16GemmRowAlign>(groups).back();
}

}  // namespace

void groupedGemmBf16NN(const uint16_t* dOut, int ldDOut, const std::vector<Bf16GemmGroup>& groups, float* dA,
                       int ldDA, bool accumulate, cudaStream_t stream) {
  const char* api = "groupedGemmBf16NN";
  checkLeading(api, "ldDOut", ldDOut);
  if (ldDA <= 0) fail(ErrorKind::Shape, api, "ldDA: expected ≥ 1, got " + std::to_string(ldDA));
  const int64_t mPad = checkGroups(api, groups, ldDOut, ldDA, "ldDA");
  for (size_t g = 0; g < groups.size(); ++g)
    if (groups[g].rows > 0) checkChunkPointer(api, "groups[" + std::to_string(g) + "].w", groups[g].w);
  if (mPad == 0) return;
  checkChunkPointer(api, "dOut", dOut);
  if (!dA) fail(ErrorKind::Argument, api, "dA: expected a device pointer, got null");
  bf16backward::Operands op;
  op.dOut = dOut;
  op.ldDOut = ldDOut;
  op.dA = dA;
  op.ldDA = ldDA;
  op.accumulate = accumulate;
  const std::vector<bf16backward::Group> table = bf16backward::kernelGroups(groups, {});
  bf16backward::launchBackward<bf16backward::NNLayout>(api, op, table, bf16backward::nnTiles(table, api), stream);
}

void groupedGemmBf16TN(const uint16_t* dOut, int ldDOut, const uint16_t* a, int lda,
                       const std::vector<Bf16GemmGroup>& groups, const std::vector<float*>& dW, bool accumulate,
                       cudaStream_t stream) {
  const char* api = "groupedGemmBf16TN";
  checkLeading(api, "ldDOut", ldDOut);
  checkLeading(api, "lda", lda);
  if (dW.size() != groups.size()) {
    fail(ErrorKind::Shape, api, "dW: expected one pointer per group (" + std::to_string(groups.size()) + "), got " +
                                    std::to_string(dW.size()));
  }
  const int64_t mPad = checkGroups(api, groups, ldDOut, lda, "lda");
  for (size_t g = 0; g < groups.size(); ++g) {
    if ((groups[g].rows > 0 || !accumulate) && !dW[g])
      fail(ErrorKind::Argument, api, "dW[" + std::to_string(g) + "]: expected a device pointer, got null");
  }
  if (mPad > 0) {
    checkChunkPointer(api, "dOut", dOut);
    checkChunkPointer(api, "a", a);
  }
  bf16backward::Operands op;
  op.dOut = dOut;
  op.ldDOut = ldDOut;
  op.a = a;
  op.lda = lda;
  op.accumulate = accumulate;
  const std::vector<bf16backward::Group> table = bf16backward::kernelGroups(groups, dW);
  bf16backward::launchBackward<bf16backward::TNLayout>(api, op, table, bf16backward::tnTiles(table, accumulate, api),
                                                       stream);
}

}  // namespace moekit::cuda
