// The emulated CUDA runtime: one device with its properties, copies/memsets/kernels/host functions
// on streams in CUDA's order, events, the copy checks, and launches CUDA would refuse.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"

namespace {

__global__ void addOne(int* data, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) data[i] += 1;
}

__global__ void scale(int* data, int n, int factor) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) data[i] *= factor;
}

EMU_CASE("runtime: one emulated device with its name and limits") {
  int count = 0;
  EMU_CUDA(cudaGetDeviceCount(&count));
  EMU_EXPECT(count == 1, "one device");
  cudaDeviceProp prop;
  EMU_CUDA(cudaGetDeviceProperties(&prop, 0));
  EMU_EXPECT(std::string(prop.name).find("moekit SIMT emulator") == 0, std::string("name: ") + prop.name);
  EMU_EXPECT(prop.warpSize == 32 && prop.maxThreadsPerBlock == 1024, "warp size and block limit");
  EMU_EXPECT(prop.major * 10 + prop.minor >= 80, "compute capability at least 8.0");
  EMU_EXPECT(cudaGetDeviceProperties(&prop, 1) == cudaErrorInvalidDevice, "device 1 does not exist");
  EMU_EXPECT(cudaGetLastError() == cudaErrorInvalidDevice, "the error is recorded");
  int value = 0;
  EMU_CUDA(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  EMU_EXPECT(size_t(value) == prop.sharedMemPerBlockOptin, "attribute and property agree");
}

EMU_CASE("runtime: memset, kernels, copies and host functions on a stream run in order") {
  constexpr int n = 1000;
  int* a = nullptr;
  int* b = nullptr;
  EMU_CUDA(cudaMalloc(&a, n * sizeof(int)));
  EMU_CUDA(cudaMalloc(&b, n * sizeof(int)));
  cudaStream_t stream;
  cudaEvent_t start, stop;
  EMU_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  EMU_CUDA(cudaEventCreate(&start));
  EMU_CUDA(cudaEventCreate(&stop));
  std::vector<int> host(n, -1);
  int hostFunctionSaw = -1;
  struct Probe {
    const std::vector<int>* host;
    int* saw;
  } probe{&host, &hostFunctionSaw};

  EMU_CUDA(cudaEventRecord(start, stream));
  EMU_CUDA(cudaMemsetAsync(a, 0x01, n * sizeof(int), stream));  // every int becomes 0x01010101
  EMU_CUDA(moekit::launch<addOne>((n + 127) / 128, 128, 0, stream, a, n));
  EMU_CUDA(cudaMemcpyAsync(b, a, n * sizeof(int), cudaMemcpyDeviceToDevice, stream));
  EMU_CUDA(moekit::launch<scale>((n + 255) / 256, 256, 0, stream, b, n, 3));
  EMU_CUDA(cudaMemcpyAsync(host.data(), b, n * sizeof(int), cudaMemcpyDeviceToHost, stream));
  EMU_CUDA(cudaLaunchHostFunc(
      stream, [](void* p) { auto* probe = static_cast<Probe*>(p); *probe->saw = (*probe->host)[n - 1]; }, &probe));
  EMU_CUDA(cudaEventRecord(stop, stream));
  EMU_CUDA(cudaStreamSynchronize(stream));

  for (int v : host) EMU_EXPECT(v == (0x01010101 + 1) * 3, "memset, +1, copy, ×3, copy back in stream order");
  EMU_EXPECT(hostFunctionSaw == (0x01010101 + 1) * 3, "the host function ran after the copy before it");
  float ms = -1;
  EMU_CUDA(cudaEventElapsedTime(&ms, start, stop));
  EMU_EXPECT(ms >= 0, "elapsed time between recorded events");

  // The default stream, and copies with cudaMemcpyDefault.
  EMU_CUDA(cudaMemset(a, 0, n * sizeof(int)));
  EMU_CUDA(moekit::launch<addOne>((n + 127) / 128, 128, 0, nullptr, a, n));
  std::vector<int> back(n);
  EMU_CUDA(cudaMemcpy(back.data(), a, n * sizeof(int), cudaMemcpyDefault));
  for (int v : back) EMU_EXPECT(v == 1, "default stream");

  EMU_CUDA(cudaEventDestroy(start));
  EMU_CUDA(cudaEventDestroy(stop));
  EMU_CUDA(cudaStreamDestroy(stream));
  EMU_CUDA(cudaFree(a));
  EMU_CUDA(cudaFree(b));
}

EMU_CASE("runtime: copies with the wrong kind or past an allocation are refused") {
  int* d = nullptr;
  EMU_CUDA(cudaMalloc(&d, 16 * sizeof(int)));
  int host[32] = {};
  EMU_EXPECT(cudaMemcpy(host, host + 16, 16, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
             "host → host under cudaMemcpyHostToDevice");
  EMU_EXPECT(cudaMemcpy(d, host, 16, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
             "host → device under cudaMemcpyDeviceToHost");
  EMU_EXPECT(cudaMemcpy(d, host, 32 * sizeof(int), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
             "writing past the allocation");
  EMU_EXPECT(cudaMemset(d + 8, 0, 9 * sizeof(int)) == cudaErrorInvalidValue, "memset past the allocation");
  EMU_EXPECT(cudaGetLastError() == cudaErrorInvalidValue, "the last error");
  EMU_EXPECT(cudaGetLastError() == cudaSuccess, "cleared by reading it");
  EMU_EXPECT(cudaFree(host) == cudaErrorInvalidDevicePointer, "freeing a host pointer");
  cudaGetLastError();
  EMU_CUDA(cudaFree(d));
  EMU_EXPECT(cudaFree(d) == cudaErrorInvalidDevicePointer, "double free");
  cudaGetLastError();
}

EMU_CASE("runtime: a launch CUDA would refuse returns its error and runs nothing") {
  emutest::DeviceArray<int> data(std::vector<int>(8, 5));
  EMU_EXPECT(moekit::launch<addOne>(1, 1025, 0, nullptr, data.get(), 8) == cudaErrorInvalidConfiguration,
             "1025 threads per block");
  EMU_EXPECT(moekit::launch<addOne>(dim3(1, 1, 1), dim3(8, 8, 65), 0, nullptr, data.get(), 8) ==
                 cudaErrorInvalidConfiguration,
             "blockDim.z of 65");
  EMU_EXPECT(moekit::launch<addOne>(0, 32, 0, nullptr, data.get(), 8) == cudaErrorInvalidConfiguration, "empty grid");
  cudaGetLastError();
  for (int v : data.download()) EMU_EXPECT(v == 5, "nothing ran");
}

EMU_CASE("runtime: fresh device memory is poisoned and freed memory is reused") {
  float* first = nullptr;
  EMU_CUDA(cudaMalloc(&first, 100 * sizeof(float)));
  EMU_EXPECT(reinterpret_cast<uintptr_t>(first) % 256 == 0, "256-byte aligned like cudaMalloc");
  std::vector<float> host(100);
  EMU_CUDA(cudaMemcpy(host.data(), first, 100 * sizeof(float), cudaMemcpyDeviceToHost));
  for (float v : host) EMU_EXPECT(v != v, "unwritten device memory reads as NaN");
  EMU_CUDA(cudaFree(first));
  float* second = nullptr;
  EMU_CUDA(cudaMalloc(&second, 90 * sizeof(float)));
  EMU_EXPECT(second == first, "the freed block is reused for a request of its size class");
  EMU_CUDA(cudaFree(second));
}

// The default memory pool (cudaMallocAsync): blocks stay reserved while idle, serve the next
// request of their class (poisoned again), and are released at a synchronisation beyond the
// release threshold (0 by default, as in CUDA) or by cudaMemPoolTrimTo.
uint64_t poolAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr) {
  uint64_t value = 0;
  emutest::check(cudaMemPoolGetAttribute(pool, attr, &value), "cudaMemPoolGetAttribute");
  return value;
}

EMU_CASE("runtime: the memory pool keeps idle blocks until a synchronisation releases what exceeds its threshold") {
  cudaMemPool_t pool = nullptr;
  EMU_CUDA(cudaDeviceGetDefaultMemPool(&pool, 0));
  cudaStream_t stream = nullptr;
  EMU_CUDA(cudaStreamCreate(&stream));
  int* a = nullptr;
  EMU_CUDA(cudaMallocAsync(reinterpret_cast<void**>(&a), 1000, stream));
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrReservedMemCurrent) == 1024, "1000 bytes take a 1024-byte block");
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrUsedMemCurrent) == 1024, "in use");
  EMU_CUDA(cudaFreeAsync(a, stream));
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrUsedMemCurrent) == 0, "freed");
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrReservedMemCurrent) == 1024, "still reserved until a synchronisation");
  EMU_CUDA(cudaStreamSynchronize(stream));
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrReservedMemCurrent) == 0, "threshold 0: released at the synchronisation");
  EMU_CUDA(cudaStreamDestroy(stream));
}

EMU_CASE("runtime: with a raised release threshold the pool reuses its blocks across synchronisations, poisoned again") {
  cudaMemPool_t pool = nullptr;
  EMU_CUDA(cudaDeviceGetDefaultMemPool(&pool, 0));
  uint64_t threshold = UINT64_MAX;
  EMU_CUDA(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrReleaseThreshold) == UINT64_MAX, "threshold set");
  int* a = nullptr;
  EMU_CUDA(cudaMallocAsync(reinterpret_cast<void**>(&a), 64 * sizeof(int), nullptr));
  EMU_CUDA(cudaMemset(a, 0, 64 * sizeof(int)));
  EMU_CUDA(cudaFreeAsync(a, nullptr));
  EMU_CUDA(cudaDeviceSynchronize());
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrReservedMemCurrent) == 256, "kept across the synchronisation");
  int* b = nullptr;
  EMU_CUDA(cudaMallocAsync(reinterpret_cast<void**>(&b), 60 * sizeof(int), nullptr));
  EMU_EXPECT(b == a, "the idle block serves the next request of its class");
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrReservedMemHigh) == 256, "the pool did not grow");
  std::vector<int> host(60);
  EMU_CUDA(cudaMemcpy(host.data(), b, 60 * sizeof(int), cudaMemcpyDeviceToHost));
  for (int v : host) EMU_EXPECT(v == -1, "a reused block reads as unwritten memory (0xFF bytes), not as the old zeros");
  EMU_CUDA(cudaFree(b));  // cudaFree takes pool memory too
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrUsedMemCurrent) == 0, "freed to the pool");
  EMU_CUDA(cudaMemPoolTrimTo(pool, 0));
  EMU_EXPECT(poolAttribute(pool, cudaMemPoolAttrReservedMemCurrent) == 0, "trimmed");
}

}  // namespace
