// cuda::Memory (memory.h). The one kernel:
//
//   nonFiniteRowKernel  one block per row (grid-stride over rows), its threads striding over the
//                       columns: a value whose exponent bits are all ones is an Inf or a NaN; the
//                       block ORs its threads' findings (__syncthreads_or) and thread 0 lowers
//                       *first to the row (atomicMin), so *first ends as the smallest bad row or
//                       stays at `rows` when there is none.
#include "memory.h"

#include <cuda_runtime.h>

#include <string>

#include "cuda_check.h"
#include "emu/launch.h"
#include "grid.h"
#include "runtime_calls.h"
#include "staging.h"
#include "stream_buffer.h"

namespace moekit::cuda {

namespace {

constexpr int kThreads = 128;
constexpr const char* kOwner = "cuda layer";

__global__ void nonFiniteRowKernel(const float* a, int rows, int cols, int* first) {
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    int bad = 0;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const unsigned bits = __float_as_uint(a[int64_t(r) * cols + c]);
      bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    if (__syncthreads_or(bad) && threadIdx.x == 0) atomicMin(first, r);
  }
}

}  // namespace

void Memory::zero(float* p, size_t n) const {
  if (n == 0) return;
  checkCuda(cudaMemsetAsync(p, 0, n * sizeof(float), deviceStream(kOwner)), "cuda layer: cudaMemsetAsync");
}

int Memory::firstNonFiniteRow(const float* a, int rows, int cols) const {
  if (rows <= 0 || cols <= 0) return -1;
  const cudaStream_t stream = deviceStream(kOwner);
  StreamBuffer<int> first(1, stream, "the non-finite row");
  int found = rows;
  checkCuda(copyAsync(first.get(), &found, sizeof(int), cudaMemcpyHostToDevice, stream),
            "cuda layer: cudaMemcpyAsync of the non-finite row");
  checkLaunch(launch<nonFiniteRowKernel>(dim3(gridBlocks(rows, 1, 1 << 16)), dim3(kThreads), 0, stream, a, rows, cols,
                                         first.get()),
              "nonFiniteRowKernel");
  checkCuda(copyAsync(&found, first.get(), sizeof(int), cudaMemcpyDeviceToHost, stream),
            "cuda layer: cudaMemcpyAsync of the non-finite row");
  checkCuda(streamSynchronize(stream), "cuda layer: cudaStreamSynchronize after the finiteness check");
  return found < rows ? found : -1;
}

void Memory::copy(void* to, const void* from, size_t bytes) const {
  if (bytes == 0) return;
  checkCuda(copyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, deviceStream(kOwner)),
            "cuda layer: cudaMemcpyAsync on the device");
}

void Memory::toHost(void* host, const void* device, size_t bytes) const {
  if (bytes == 0) return;
  const cudaStream_t stream = deviceStream(kOwner);
  checkCuda(copyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream), "cuda layer: cudaMemcpyAsync to the host");
  checkCuda(streamSynchronize(stream), "cuda layer: cudaStreamSynchronize after a copy to the host");
}

void Memory::fromHost(void* device, const void* host, size_t bytes) const {
  if (bytes == 0) return;
  checkCuda(copyAsync(device, host, bytes, cudaMemcpyHostToDevice, deviceStream(kOwner)),
            "cuda layer: cudaMemcpyAsync to the device");
}

std::shared_ptr<void> Memory::allocate(size_t bytes) const {
  const cudaStream_t stream = deviceStream(kOwner);
  void* p = nullptr;
  checkCuda(mallocAsync(&p, bytes > 0 ? bytes : 1, stream),
            "cuda layer: cudaMallocAsync of " + std::to_string(bytes) + " bytes of scratch");
  return std::shared_ptr<void>(p, [stream](void* q) { freeAsync(q, stream); });
}

}  // namespace moekit::cuda
