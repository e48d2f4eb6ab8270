// Several emulated devices (MOEKIT_EMU_DEVICES): the count, the current device per host thread,
// memory in the region of the device that allocated it, streams that belong to a device, and the
// faults for a kernel that reaches another device's memory — through an argument (KernelFault) or
// through a pointer held in memory (the region is closed to it: abort with a message) — and for a
// launch into another device's stream. Each case sets MOEKIT_EMU_DEVICES=2 before its first CUDA
// call (a case runs in its own process).
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

namespace {

void twoDevices() { setenv("MOEKIT_EMU_DEVICES", "2", 1); }

__global__ void addTo(int* data, int n, int value) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) data[i] += value;
}

// Reads the array whose address is stored at *where (a pointer the launch arguments do not show).
__global__ void readThrough(int* const* where, int* out) { out[threadIdx.x] = (*where)[threadIdx.x]; }

EMU_CASE("devices: MOEKIT_EMU_DEVICES=2 gives two devices; cuda:2 does not exist") {
  twoDevices();
  int count = 0;
  EMU_CUDA(cudaGetDeviceCount(&count));
  EMU_EXPECT(count == 2, "two devices, got " + std::to_string(count));
  cudaDeviceProp prop;
  EMU_CUDA(cudaGetDeviceProperties(&prop, 1));
  EMU_EXPECT(std::string(prop.name).find("moekit SIMT emulator") == 0, "device 1 is an emulator device too");
  EMU_EXPECT(cudaSetDevice(2) == cudaErrorInvalidDevice, "cuda:2 does not exist");
  int current = -1;
  EMU_CUDA(cudaGetDevice(&current));
  EMU_EXPECT(current == 0, "a refused cudaSetDevice keeps the current device");
}

EMU_CASE("devices: the current device belongs to the host thread; memory to the device that allocated it") {
  twoDevices();
  EMU_CUDA(cudaSetDevice(1));
  int other = -1;
  std::thread([&] { cudaGetDevice(&other); }).join();
  EMU_EXPECT(other == 0, "a new host thread starts on cuda:0");
  int* onOne = nullptr;
  EMU_CUDA(cudaMalloc(&onOne, 64 * sizeof(int)));
  cudaPointerAttributes attributes;
  EMU_CUDA(cudaPointerGetAttributes(&attributes, onOne));
  EMU_EXPECT(attributes.type == cudaMemoryTypeDevice && attributes.device == 1, "allocated on cuda:1");
  EMU_CUDA(cudaSetDevice(0));
  int* onZero = nullptr;
  EMU_CUDA(cudaMalloc(&onZero, 64 * sizeof(int)));
  EMU_CUDA(cudaPointerGetAttributes(&attributes, onZero));
  EMU_EXPECT(attributes.device == 0, "allocated on cuda:0");
  EMU_CUDA(cudaFree(onOne));  // freeing from another current device is allowed, as in CUDA
  EMU_CUDA(cudaFree(onZero));
}

EMU_CASE("devices: a kernel on cuda:1 with cuda:1 memory runs; copies cross devices") {
  twoDevices();
  std::vector<int> host(100);
  for (int i = 0; i < 100; ++i) host[size_t(i)] = i;
  emutest::DeviceArray<int> zero(host);  // on cuda:0
  EMU_CUDA(cudaSetDevice(1));
  emutest::DeviceArray<int> one(100);
  EMU_CUDA(cudaMemcpy(one.get(), zero.get(), 100 * sizeof(int), cudaMemcpyDeviceToDevice));
  cudaStream_t stream = nullptr;
  EMU_CUDA(cudaStreamCreate(&stream));
  EMU_CUDA(moekit::launch<addTo>(4, 32, 0, stream, one.get(), 100, 5));
  EMU_CUDA(cudaStreamSynchronize(stream));
  const std::vector<int> got = one.download();
  for (int i = 0; i < 100; ++i) EMU_EXPECT(got[size_t(i)] == i + 5, "element " + std::to_string(i));
  EMU_CUDA(cudaStreamDestroy(stream));
}

EMU_CASE("devices: a kernel on cuda:0 given cuda:1 memory as an argument is a KernelFault naming both") {
  twoDevices();
  EMU_CUDA(cudaSetDevice(1));
  emutest::DeviceArray<int> one(64);
  EMU_CUDA(cudaSetDevice(0));
  const std::string fault = emutest::expectFault([&] { moekit::launch<addTo>(2, 32, 0, nullptr, one.get(), 64, 1); });
  emutest::expectContains(fault, {"addTo", "launched on cuda:0", "argument 0", "memory of cuda:1"});
  // The same launch on cuda:1 runs.
  EMU_CUDA(cudaSetDevice(1));
  EMU_CUDA(moekit::launch<addTo>(2, 32, 0, nullptr, one.get(), 64, 1));
}

EMU_CASE("devices: a launch into a stream of cuda:1 while cuda:0 is current is refused") {
  twoDevices();
  EMU_CUDA(cudaSetDevice(1));
  cudaStream_t stream = nullptr;
  EMU_CUDA(cudaStreamCreate(&stream));
  emutest::DeviceArray<int> one(64);
  EMU_CUDA(cudaSetDevice(0));
  EMU_EXPECT(moekit::launch<addTo>(2, 32, 0, stream, one.get(), 64, 1) == cudaErrorInvalidResourceHandle,
             "the launch is refused");
  EMU_EXPECT(cudaGetLastError() == cudaErrorInvalidResourceHandle, "the error is recorded");
  EMU_CUDA(cudaSetDevice(1));
  EMU_CUDA(moekit::launch<addTo>(2, 32, 0, stream, one.get(), 64, 1));
  EMU_CUDA(cudaStreamDestroy(stream));
}

EMU_CASE("devices: a kernel reaching cuda:1 memory through a stored pointer aborts with a message naming both") {
  twoDevices();
  EMU_CUDA(cudaSetDevice(1));
  int* onOne = nullptr;
  EMU_CUDA(cudaMalloc(&onOne, 32 * sizeof(int)));
  EMU_CUDA(cudaMemset(onOne, 0, 32 * sizeof(int)));
  EMU_CUDA(cudaSetDevice(0));
  int** where = nullptr;
  int* out = nullptr;
  EMU_CUDA(cudaMalloc(&where, sizeof(int*)));
  EMU_CUDA(cudaMalloc(&out, 32 * sizeof(int)));
  EMU_CUDA(cudaMemcpy(where, &onOne, sizeof(int*), cudaMemcpyHostToDevice));
  const auto [signal, message] = emutest::inChild([&] { moekit::launch<readThrough>(1, 32, 0, nullptr, where, out); });
  EMU_EXPECT(signal == SIGABRT, "the child was ended by abort(), got signal " + std::to_string(signal));
  emutest::expectContains(message, {"readThrough touched device memory of cuda:1", "no peer access"});
  // Pointing at cuda:0 memory instead, the same kernel runs.
  int* onZero = nullptr;
  EMU_CUDA(cudaMalloc(&onZero, 32 * sizeof(int)));
  EMU_CUDA(cudaMemset(onZero, 0, 32 * sizeof(int)));
  EMU_CUDA(cudaMemcpy(where, &onZero, sizeof(int*), cudaMemcpyHostToDevice));
  EMU_CUDA(moekit::launch<readThrough>(1, 32, 0, nullptr, where, out));
}

}  // namespace
