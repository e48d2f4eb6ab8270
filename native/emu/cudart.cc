// The CUDA runtime API for the SIMT emulator: the extern "C" functions cuda_runtime_api.h declares,
// implemented on the host, so the CUDA backend's host code links without libcudart.
//
// MOEKIT_EMU_DEVICES devices (default 1) named "moekit SIMT emulator", each with its own region of
// device memory (device_memory.h); the current device is per host thread, a stream belongs to
// the device current at its creation, and a launch into another device's stream is refused
// (cudaErrorInvalidResourceHandle, as CUDA does). Every stream runs synchronously: a
// kernel, copy, memset or host function has finished when the call returns, which is one of the
// orders CUDA allows, so events are recorded at once and synchronising is a no-op. Copies check
// what CUDA checks and a little more: the kind must match where the pointers live (device =
// inside the emulator's arena) and device ranges must lie within one allocation; a violation is
// reported on stderr and returned as cudaErrorInvalidValue. Errors are per host thread
// (cudaGetLastError). Kernel launches go through moekit::launch (launch.h), not cudaLaunchKernel.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "cudart_state.h"
#include "device_memory.h"

struct CUstream_st {
  unsigned flags;
  int priority;
  int device;
};

struct CUevent_st {
  unsigned flags;
  bool recorded;
  std::chrono::steady_clock::time_point when;
};

// A device's default memory pool (cudaMallocAsync / cudaFreeAsync): blocks of power-of-two size
// classes taken from the device's arena region. A freed block stays reserved by the pool (idle)
// and serves the next request of its class; at a synchronisation (stream, event, device) the pool
// releases idle blocks while it reserves more than its release threshold (default 0, as in CUDA),
// and cudaMemPoolTrimTo releases down to a given size. Every operation has completed when its
// call returns here, so reuse needs no stream-order tracking.
struct CUmemPoolHandle_st {
  int device = 0;
  uint64_t releaseThreshold = 0;
  uint64_t reserved = 0, used = 0, reservedHigh = 0, usedHigh = 0;
  std::map<size_t, std::vector<void*>> idle;  // size class → idle blocks
  std::map<void*, size_t> inUse;              // block → size class
};

namespace moekit::emu {
namespace {

thread_local cudaError_t lastError = cudaSuccess;
thread_local int current = 0;  // this host thread's device (cudaSetDevice)

constexpr int kMultiprocessors = 4;
constexpr size_t kDefaultDynamicShared = 48 * 1024;

std::mutex stateMutex;
std::map<const void*, size_t> dynamicSharedLimits;  // kernel → cudaFuncAttributeMaxDynamicSharedMemorySize
std::set<void*> managedAllocations;                  // host memory handed out by cudaMallocManaged
CUmemPoolHandle_st pools[8];                          // each device's default pool (under stateMutex)

size_t sizeClass(size_t bytes) {
  size_t size = 256;
  while (size < bytes) size <<= 1;
  return size;
}

// Releases idle blocks of `pool` while it reserves more than `keep` bytes (stateMutex held).
void releaseIdle(CUmemPoolHandle_st& pool, uint64_t keep) {
  for (auto it = pool.idle.begin(); it != pool.idle.end() && pool.reserved > keep;) {
    while (!it->second.empty() && pool.reserved > keep) {
      deviceFree(it->second.back());
      it->second.pop_back();
      pool.reserved -= it->first;
    }
    it = it->second.empty() ? pool.idle.erase(it) : std::next(it);
  }
}

// Returns a pool block to its pool's idle list; false when p is no pool block (stateMutex held).
bool freeToPool(void* p) {
  for (CUmemPoolHandle_st& pool : pools) {
    const auto it = pool.inUse.find(p);
    if (it == pool.inUse.end()) continue;
    pool.idle[it->second].push_back(p);
    pool.used -= it->second;
    pool.inUse.erase(it);
    return true;
  }
  return false;
}

// A synchronisation point: every pool gives back what exceeds its release threshold.
void releaseAboveThresholds() {
  std::lock_guard<std::mutex> lock(stateMutex);
  for (CUmemPoolHandle_st& pool : pools) releaseIdle(pool, pool.releaseThreshold);
}

cudaError_t fail(cudaError_t err, const char* api, const std::string& why) {
  std::fprintf(stderr, "moekit emulator: %s: %s\n", api, why.c_str());
  return recordError(err);
}

cudaError_t ok() { return cudaSuccess; }

const char* where(bool device) { return device ? "device memory" : "host memory"; }

cudaError_t copy(void* dst, const void* src, size_t count, cudaMemcpyKind kind, const char* api) {
  if (count == 0) return ok();
  const bool dstDevice = isDevicePointer(dst);
  const bool srcDevice = isDevicePointer(src);
  bool wantDst = dstDevice, wantSrc = srcDevice;
  switch (kind) {
    case cudaMemcpyHostToHost: wantDst = false; wantSrc = false; break;
    case cudaMemcpyHostToDevice: wantDst = true; wantSrc = false; break;
    case cudaMemcpyDeviceToHost: wantDst = false; wantSrc = true; break;
    case cudaMemcpyDeviceToDevice: wantDst = true; wantSrc = true; break;
    case cudaMemcpyDefault: break;
    default: return fail(cudaErrorInvalidMemcpyDirection, api, "unknown cudaMemcpyKind " + std::to_string(int(kind)));
  }
  if (wantDst != dstDevice || wantSrc != srcDevice) {
    return fail(cudaErrorInvalidValue, api,
                std::string("the copy kind expects ") + where(wantSrc) + " → " + where(wantDst) + " but got " +
                    where(srcDevice) + " → " + where(dstDevice));
  }
  if (dstDevice && !deviceRangeValid(dst, count)) {
    return fail(cudaErrorInvalidValue, api,
                "writing " + std::to_string(count) + " bytes at the destination leaves its allocation");
  }
  if (srcDevice && !deviceRangeValid(src, count)) {
    return fail(cudaErrorInvalidValue, api,
                "reading " + std::to_string(count) + " bytes at the source leaves its allocation");
  }
  DeviceAccess access;
  std::memmove(dst, src, count);
  return ok();
}

cudaError_t fill(void* dst, int value, size_t count, const char* api) {
  if (count == 0) return ok();
  if (!isDevicePointer(dst) || !deviceRangeValid(dst, count)) {
    return fail(cudaErrorInvalidValue, api,
                "the " + std::to_string(count) + " bytes to set are not within one device allocation");
  }
  DeviceAccess access;
  std::memset(dst, value, count);
  return ok();
}

cudaError_t checkDevice(int device, const char* api) {
  if (device >= 0 && device < emulatedDeviceCount()) return ok();
  return fail(cudaErrorInvalidDevice, api,
              "device " + std::to_string(device) + " does not exist (the emulator has " + std::to_string(emulatedDeviceCount()) +
                  "; MOEKIT_EMU_DEVICES sets how many)");
}

}  // namespace

int emulatedDeviceCount() {
  static const int count = [] {
    const char* env = std::getenv("MOEKIT_EMU_DEVICES");
    if (!env || !*env) return 1;
    char* rest = nullptr;
    const long n = std::strtol(env, &rest, 10);
    if (*rest != '\0' || n < 1 || n > 8) {
      std::fprintf(stderr, "moekit emulator: MOEKIT_EMU_DEVICES must be an integer in [1, 8], got '%s'; using 1\n", env);
      return 1;
    }
    return int(n);
  }();
  return count;
}

int currentDevice() { return current; }

int streamDevice(cudaStream_t stream) { return stream ? stream->device : current; }

cudaError_t recordError(cudaError_t err) {
  if (err != cudaSuccess) lastError = err;
  return err;
}

size_t maxDynamicSharedBytes(const void* kernel) {
  std::lock_guard<std::mutex> lock(stateMutex);
  auto it = dynamicSharedLimits.find(kernel);
  return it == dynamicSharedLimits.end() ? kDefaultDynamicShared : it->second;
}

namespace {
std::atomic<int> computeCapabilityOverride{0};
}  // namespace

void setComputeCapability(int cc) { computeCapabilityOverride.store(cc); }

int computeCapability() {
  if (const int cc = computeCapabilityOverride.load()) return cc;
  static const int fromEnvironment = [] {
    const char* env = std::getenv("MOEKIT_EMU_SM");
    const int v = env ? std::atoi(env) : 89;
    return v == 80 || v == 86 || v == 89 || v == 90 ? v : 89;
  }();
  return fromEnvironment;
}

size_t sharedMemoryOptin() {
  switch (computeCapability()) {
    case 80: return 163 * 1024;
    case 90: return 227 * 1024;
    default: return 99 * 1024;
  }
}

}  // namespace moekit::emu

using namespace moekit::emu;

// ---- errors --------------------------------------------------------------------------------------
extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t err = lastError;
  lastError = cudaSuccess;
  return err;
}

cudaError_t cudaPeekAtLastError(void) { return lastError; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
#define MOEKIT_EMU_NAME(e) \
  case e: return #e;
    MOEKIT_EMU_NAME(cudaSuccess)
    MOEKIT_EMU_NAME(cudaErrorInvalidValue)
    MOEKIT_EMU_NAME(cudaErrorMemoryAllocation)
    MOEKIT_EMU_NAME(cudaErrorInitializationError)
    MOEKIT_EMU_NAME(cudaErrorInvalidConfiguration)
    MOEKIT_EMU_NAME(cudaErrorInvalidMemcpyDirection)
    MOEKIT_EMU_NAME(cudaErrorInvalidDevicePointer)
    MOEKIT_EMU_NAME(cudaErrorInvalidDevice)
    MOEKIT_EMU_NAME(cudaErrorInvalidResourceHandle)
    MOEKIT_EMU_NAME(cudaErrorNotReady)
    MOEKIT_EMU_NAME(cudaErrorLaunchFailure)
    MOEKIT_EMU_NAME(cudaErrorNoDevice)
    MOEKIT_EMU_NAME(cudaErrorNotSupported)
#undef MOEKIT_EMU_NAME
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unrecognized error code";
  }
}

// ---- device --------------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* count) {
  *count = emulatedDeviceCount();
  return ok();
}

cudaError_t cudaSetDevice(int device) {
  if (const cudaError_t err = checkDevice(device, "cudaSetDevice")) return err;
  current = device;
  return ok();
}

cudaError_t cudaGetDevice(int* device) {
  *device = current;
  return ok();
}

cudaError_t cudaDeviceSynchronize(void) {
  releaseAboveThresholds();
  return ok();
}
cudaError_t cudaDeviceReset(void) { return ok(); }

cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = CUDART_VERSION;
  return ok();
}

cudaError_t cudaDriverGetVersion(int* version) {
  *version = CUDART_VERSION;
  return ok();
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (const cudaError_t err = checkDevice(device, "cudaGetDeviceProperties")) return err;
  std::memset(prop, 0, sizeof *prop);
  const int cc = computeCapability();
  std::snprintf(prop->name, sizeof prop->name, "moekit SIMT emulator (sm_%d)", cc);
  prop->totalGlobalMem = deviceCapacity();
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = sharedMemoryOptin();
  prop->sharedMemPerMultiprocessor = sharedMemoryOptin() + 1024;
  prop->regsPerBlock = 65536;
  prop->regsPerMultiprocessor = 65536;
  prop->warpSize = 32;
  prop->memPitch = size_t(1) << 31;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 64 * 1024;
  prop->major = cc / 10;
  prop->minor = cc % 10;
  prop->multiProcessorCount = kMultiprocessors;
  prop->maxThreadsPerMultiProcessor = cc == 89 ? 1536 : 2048;
  prop->maxBlocksPerMultiProcessor = cc == 89 ? 24 : 32;
  prop->l2CacheSize = 4 * 1024 * 1024;
  prop->unifiedAddressing = 1;
  prop->concurrentKernels = 1;
  prop->managedMemory = 1;
  prop->memoryPoolsSupported = 1;
  return ok();
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (const cudaError_t err = checkDevice(device, "cudaDeviceGetAttribute")) return err;
  const int cc = computeCapability();
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxBlockDimX: case cudaDevAttrMaxBlockDimY: *value = 1024; break;
    case cudaDevAttrMaxBlockDimZ: *value = 64; break;
    case cudaDevAttrMaxGridDimX: *value = 0x7fffffff; break;
    case cudaDevAttrMaxGridDimY: case cudaDevAttrMaxGridDimZ: *value = 65535; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(sharedMemoryOptin()); break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = int(sharedMemoryOptin()) + 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = kMultiprocessors; break;
    case cudaDevAttrComputeCapabilityMajor: *value = cc / 10; break;
    case cudaDevAttrComputeCapabilityMinor: *value = cc % 10; break;
    case cudaDevAttrMaxRegistersPerBlock: *value = 65536; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = cc == 89 ? 1536 : 2048; break;
    case cudaDevAttrL2CacheSize: *value = 4 * 1024 * 1024; break;
    case cudaDevAttrUnifiedAddressing: *value = 1; break;
    default: *value = 0; break;
  }
  return ok();
}

cudaError_t cudaDeviceGetStreamPriorityRange(int* leastPriority, int* greatestPriority) {
  if (leastPriority) *leastPriority = 0;
  if (greatestPriority) *greatestPriority = -5;
  return ok();
}

// ---- memory --------------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** devPtr, size_t size) {
  *devPtr = deviceAlloc(size, current);
  if (!*devPtr) {
    return fail(cudaErrorMemoryAllocation, "cudaMalloc", std::to_string(size) + " bytes do not fit on cuda:" + std::to_string(current));
  }
  return ok();
}

// From the default pool of the stream's device, as CUDA's stream-ordered allocator does.
cudaError_t cudaMallocAsync(void** devPtr, size_t size, cudaStream_t stream) {
  const int device = streamDevice(stream);
  const size_t size_class = sizeClass(size == 0 ? 1 : size);
  std::lock_guard<std::mutex> lock(stateMutex);
  CUmemPoolHandle_st& pool = pools[device];
  pool.device = device;
  auto& idle = pool.idle[size_class];
  if (!idle.empty()) {
    *devPtr = idle.back();
    idle.pop_back();
    DeviceAccess access(device);
    std::memset(*devPtr, 0xff, size_class);  // as fresh memory: nobody wrote it in this allocation
  } else {
    *devPtr = deviceAlloc(size_class, device);
    if (!*devPtr) {
      return fail(cudaErrorMemoryAllocation, "cudaMallocAsync", std::to_string(size) + " bytes do not fit on cuda:" + std::to_string(device));
    }
    pool.reserved += size_class;
    pool.reservedHigh = std::max(pool.reservedHigh, pool.reserved);
  }
  pool.inUse[*devPtr] = size_class;
  pool.used += size_class;
  pool.usedHigh = std::max(pool.usedHigh, pool.used);
  return ok();
}

cudaError_t cudaFree(void* devPtr) {
  if (!devPtr) return ok();
  {
    std::lock_guard<std::mutex> lock(stateMutex);
    if (managedAllocations.erase(devPtr)) {
      std::free(devPtr);
      return ok();
    }
    if (freeToPool(devPtr)) return ok();  // cudaFree takes cudaMallocAsync memory too
  }
  if (!deviceFree(devPtr)) {
    return fail(cudaErrorInvalidDevicePointer, "cudaFree", "the pointer is not a live cudaMalloc allocation");
  }
  return ok();
}

cudaError_t cudaFreeAsync(void* devPtr, cudaStream_t) { return cudaFree(devPtr); }

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* memPool, int device) {
  if (const cudaError_t err = checkDevice(device, "cudaDeviceGetDefaultMemPool")) return err;
  std::lock_guard<std::mutex> lock(stateMutex);
  pools[device].device = device;
  *memPool = &pools[device];
  return ok();
}

cudaError_t cudaDeviceGetMemPool(cudaMemPool_t* memPool, int device) { return cudaDeviceGetDefaultMemPool(memPool, device); }

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t memPool, cudaMemPoolAttr attr, void* value) {
  if (!memPool) return fail(cudaErrorInvalidValue, "cudaMemPoolSetAttribute", "null pool");
  std::lock_guard<std::mutex> lock(stateMutex);
  const uint64_t v = *static_cast<const uint64_t*>(value);
  switch (attr) {
    case cudaMemPoolAttrReleaseThreshold: memPool->releaseThreshold = v; return ok();
    case cudaMemPoolAttrReservedMemHigh:  // only a reset (to 0) is allowed: the mark becomes the current value
      if (v != 0) break;
      memPool->reservedHigh = memPool->reserved;
      return ok();
    case cudaMemPoolAttrUsedMemHigh:
      if (v != 0) break;
      memPool->usedHigh = memPool->used;
      return ok();
    default: break;
  }
  return fail(cudaErrorInvalidValue, "cudaMemPoolSetAttribute", "attribute " + std::to_string(int(attr)) + " with this value is not modelled");
}

cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t memPool, cudaMemPoolAttr attr, void* value) {
  if (!memPool) return fail(cudaErrorInvalidValue, "cudaMemPoolGetAttribute", "null pool");
  std::lock_guard<std::mutex> lock(stateMutex);
  uint64_t& v = *static_cast<uint64_t*>(value);
  switch (attr) {
    case cudaMemPoolAttrReleaseThreshold: v = memPool->releaseThreshold; return ok();
    case cudaMemPoolAttrReservedMemCurrent: v = memPool->reserved; return ok();
    case cudaMemPoolAttrReservedMemHigh: v = memPool->reservedHigh; return ok();
    case cudaMemPoolAttrUsedMemCurrent: v = memPool->used; return ok();
    case cudaMemPoolAttrUsedMemHigh: v = memPool->usedHigh; return ok();
    default: break;
  }
  return fail(cudaErrorInvalidValue, "cudaMemPoolGetAttribute", "attribute " + std::to_string(int(attr)) + " is not modelled");
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t memPool, size_t minBytesToKeep) {
  if (!memPool) return fail(cudaErrorInvalidValue, "cudaMemPoolTrimTo", "null pool");
  std::lock_guard<std::mutex> lock(stateMutex);
  releaseIdle(*memPool, minBytesToKeep);
  return ok();
}

cudaError_t cudaMallocHost(void** ptr, size_t size) {
  *ptr = std::aligned_alloc(256, (size + 255) / 256 * 256 + 256);
  return *ptr ? ok() : fail(cudaErrorMemoryAllocation, "cudaMallocHost", std::to_string(size) + " bytes");
}

cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int) { return cudaMallocHost(pHost, size); }

cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
  return ok();
}

// Managed memory is reachable from the host too, so it is plain host memory here.
cudaError_t cudaMallocManaged(void** devPtr, size_t size, unsigned int) {
  if (cudaMallocHost(devPtr, size) != cudaSuccess) return cudaErrorMemoryAllocation;
  std::lock_guard<std::mutex> lock(stateMutex);
  managedAllocations.insert(*devPtr);
  return ok();
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *total = deviceCapacity();
  *free = *total - deviceBytesInUse(current);  // a pool's idle blocks count as used, as in CUDA
  return ok();
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  std::memset(attributes, 0, sizeof *attributes);
  const bool device = isDevicePointer(ptr);
  attributes->type = device ? cudaMemoryTypeDevice : cudaMemoryTypeUnregistered;
  attributes->device = device ? deviceOf(ptr) : 0;
  attributes->devicePointer = device ? const_cast<void*>(ptr) : nullptr;
  attributes->hostPointer = device ? nullptr : const_cast<void*>(ptr);
  return ok();
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return copy(dst, src, count, kind, "cudaMemcpy");
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t) {
  return copy(dst, src, count, kind, "cudaMemcpyAsync");
}

cudaError_t cudaMemset(void* devPtr, int value, size_t count) { return fill(devPtr, value, count, "cudaMemset"); }

cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t) {
  return fill(devPtr, value, count, "cudaMemsetAsync");
}

// __device__ and __constant__ variables are ordinary globals under the emulator.
cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src, size_t count, size_t offset, cudaMemcpyKind kind) {
  if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToDevice && kind != cudaMemcpyDefault) {
    return fail(cudaErrorInvalidMemcpyDirection, "cudaMemcpyToSymbol", "the kind must copy to the device");
  }
  DeviceAccess access;
  std::memcpy(static_cast<char*>(const_cast<void*>(symbol)) + offset, src, count);
  return ok();
}

cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t count, size_t offset, cudaMemcpyKind kind) {
  if (kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice && kind != cudaMemcpyDefault) {
    return fail(cudaErrorInvalidMemcpyDirection, "cudaMemcpyFromSymbol", "the kind must copy from the device");
  }
  DeviceAccess access;
  std::memcpy(dst, static_cast<const char*>(symbol) + offset, count);
  return ok();
}

// ---- streams and events --------------------------------------------------------------------------
cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  *stream = new CUstream_st{0, 0, current};
  return ok();
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  *stream = new CUstream_st{flags, 0, current};
  return ok();
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t* stream, unsigned int flags, int priority) {
  *stream = new CUstream_st{flags, priority, current};
  return ok();
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return ok();
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  releaseAboveThresholds();
  return ok();
}
cudaError_t cudaStreamQuery(cudaStream_t) { return ok(); }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return ok(); }

cudaError_t cudaLaunchHostFunc(cudaStream_t, cudaHostFn_t fn, void* userData) {
  fn(userData);
  return ok();
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st{0, false, {}};
  return ok();
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  *event = new CUevent_st{flags, false, {}};
  return ok();
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return ok();
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (!event) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord", "null event");
  event->recorded = true;
  event->when = std::chrono::steady_clock::now();
  return ok();
}

cudaError_t cudaEventSynchronize(cudaEvent_t) {
  releaseAboveThresholds();
  return ok();
}
cudaError_t cudaEventQuery(cudaEvent_t) { return ok(); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end || !start->recorded || !end->recorded) {
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime", "both events must have been recorded");
  }
  if ((start->flags | end->flags) & cudaEventDisableTiming) {
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime", "an event was created with cudaEventDisableTiming");
  }
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return ok();
}

// ---- kernel attributes ---------------------------------------------------------------------------
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return ok();
  if (value < 0 || size_t(value) > sharedMemoryOptin()) {
    return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute",
                std::to_string(value) + " bytes of dynamic shared memory exceed the device's " +
                    std::to_string(sharedMemoryOptin()));
  }
  std::lock_guard<std::mutex> lock(stateMutex);
  dynamicSharedLimits[func] = size_t(value);
  return ok();
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  attr->maxDynamicSharedSizeBytes = int(maxDynamicSharedBytes(func));
  attr->numRegs = 32;
  attr->ptxVersion = computeCapability();
  attr->binaryVersion = computeCapability();
  return ok();
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, const void*, int blockSize, size_t) {
  if (blockSize <= 0 || blockSize > 1024) {
    return fail(cudaErrorInvalidValue, "cudaOccupancyMaxActiveBlocksPerMultiprocessor", "block size out of range");
  }
  *numBlocks = std::max(1, 2048 / blockSize);
  return ok();
}

}  // extern "C"
