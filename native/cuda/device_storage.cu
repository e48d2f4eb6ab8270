#include "device_storage.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "devices.h"
#include "runtime_calls.h"
#include "staging.h"

namespace moekit::cuda {

namespace {

const char* const kOwner = "cuda tensor";

// The pinned staging of host→device copies of one device: two chunks used in turn, each with the
// event of the copy that last read it. Writing a chunk waits for that event only when the copy is
// still running (a wait counted as a synchronisation); a copy of n bytes thus goes up in
// ⌈n/kChunk⌉ asynchronous copies from page-locked memory, which the DMA engine reads directly.
class PinnedStaging {
 public:
  static constexpr size_t kChunk = size_t(4) << 20;

  void write(void* device, const void* host, size_t bytes, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!chunks_[0]) {
      for (int i = 0; i < 2; ++i) {
        checkCuda(cudaMallocHost(&chunks_[i], kChunk), "cuda tensor: cudaMallocHost of the pinned staging buffer");
        checkCuda(cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming), "cuda tensor: cudaEventCreate");
      }
    }
    for (size_t offset = 0; offset < bytes; offset += kChunk, next_ ^= 1) {
      const size_t n = std::min(kChunk, bytes - offset);
      if (cudaEventQuery(done_[next_]) != cudaSuccess) {
        checkCuda(cudaEventSynchronize(done_[next_]), "cuda tensor: waiting for the pinned staging buffer");
        DeviceCounters::instance().synchronized();
      }
      std::memcpy(chunks_[next_], static_cast<const char*>(host) + offset, n);
      checkCuda(copyAsync(static_cast<char*>(device) + offset, chunks_[next_], n, cudaMemcpyHostToDevice, stream),
                "cuda tensor: cudaMemcpyAsync to the device");
      checkCuda(cudaEventRecord(done_[next_], stream), "cuda tensor: cudaEventRecord");
    }
  }

 private:
  std::mutex mutex_;
  void* chunks_[2] = {nullptr, nullptr};
  cudaEvent_t done_[2] = {nullptr, nullptr};
  int next_ = 0;
};

PinnedStaging& pinnedStaging(int device) {
  static PinnedStaging staging[DeviceCounters::kMaxDevices];
  return staging[device];
}

}  // namespace

DeviceStorage::DeviceStorage(int device, size_t bytes) : bytes_(bytes), device_(device) {
  selectDevice(device);
  if (device >= DeviceCounters::kMaxDevices)
    throw Error(ErrorKind::Device, "device: cuda:" + std::to_string(device) + " is beyond the " +
                                       std::to_string(DeviceCounters::kMaxDevices) + " devices moekit tracks");
  if (bytes == 0) return;
  const cudaStream_t stream = deviceStream(kOwner);
  checkCuda(mallocAsync(&data_, bytes, stream),
            "cuda tensor: cudaMallocAsync of " + std::to_string(bytes) + " bytes on cuda:" + std::to_string(device));
  checkCuda(cudaMemsetAsync(data_, 0, bytes, stream), "cuda tensor: cudaMemsetAsync");
}

DeviceStorage::~DeviceStorage() { release(); }

size_t DeviceStorage::release() {
  if (released_) return 0;
  released_ = true;
  if (!data_) return 0;
  // Runs in finalizers: a failure here cannot be reported, and the memory stays with the pool.
  int current = 0;
  if (cudaGetDevice(&current) == cudaSuccess && cudaSetDevice(device_) == cudaSuccess) {
    freeAsync(data_, deviceStream(kOwner));
    cudaSetDevice(current);
  }
  data_ = nullptr;
  return bytes_;
}

void DeviceStorage::readBytes(void* host, size_t bytes) const {
  if (bytes == 0) return;
  selectDevice(device_);
  const cudaStream_t stream = deviceStream(kOwner);
  checkCuda(copyAsync(host, data_, bytes, cudaMemcpyDeviceToHost, stream), "cuda tensor: cudaMemcpyAsync to the host");
  checkCuda(streamSynchronize(stream), "cuda tensor: cudaStreamSynchronize");
}

void DeviceStorage::writeBytes(size_t offset, const void* host, size_t bytes) {
  markWritten();
  if (bytes == 0) return;
  selectDevice(device_);
  pinnedStaging(device_).write(static_cast<char*>(data_) + offset, host, bytes, deviceStream(kOwner));
}

void DeviceStorage::zero() {
  markWritten();
  if (bytes_ == 0) return;
  selectDevice(device_);
  checkCuda(cudaMemsetAsync(data_, 0, bytes_, deviceStream(kOwner)), "cuda tensor: cudaMemsetAsync");
}

void DeviceStorage::copyFrom(const DeviceStorage& source, size_t bytes) {
  markWritten();
  if (bytes == 0) return;
  if (source.device_ != device_) {  // across devices through the host: no peer access is assumed
    std::vector<char> host(bytes);
    source.readBytes(host.data(), bytes);
    writeBytes(0, host.data(), bytes);
    return;
  }
  selectDevice(device_);
  checkCuda(copyAsync(data_, source.data_, bytes, cudaMemcpyDeviceToDevice, deviceStream(kOwner)),
            "cuda tensor: cudaMemcpyAsync on the device");
}

}  // namespace moekit::cuda
