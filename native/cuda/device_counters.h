// Per-device counters of what moekit asks of the CUDA runtime (DESIGN §2b; cuda.stats() in
// JavaScript, the fields in device_stats.h): bytes copied host→device and device→host, host
// synchronisations, device allocations, kernel launches, the bytes of moekit's device memory in use
// (live, and its peak) and reserved (in use + the memory pool's idle blocks).
// They are counted where moekit makes the calls — runtime_calls.h (copies, synchronisations,
// allocations) and emu/launch.h (kernels) — not inside a runtime, so a real GPU and the emulated
// one count alike. Header-only: every binary that launches kernels (the addons, the emulator's
// test programs) has one set. Host code only.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "device_stats.h"

namespace moekit::cuda {

class DeviceCounters {
 public:
  static constexpr int kMaxDevices = 64;

  static DeviceCounters& instance() {
    static DeviceCounters counters;
    return counters;
  }

  // The counts of `device` since its last reset(); a device index out of range reads zeros.
  DeviceStats read(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    return inRange(device) ? stats_[size_t(device)] : DeviceStats{};
  }
  // Every count of `device` to zero; peakBytes to the bytes live now.
  void reset(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!inRange(device)) return;
    DeviceStats& s = stats_[size_t(device)];
    s = DeviceStats{0, 0, 0, 0, 0, s.liveBytes, s.liveBytes, s.reservedBytes};
  }

  void copied(cudaMemcpyKind kind, size_t bytes) {
    if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost) return;
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceStats& s = current();
    (kind == cudaMemcpyHostToDevice ? s.hostToDeviceBytes : s.deviceToHostBytes) += int64_t(bytes);
  }
  void synchronized() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++current().synchronizations;
  }
  void launched() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++current().launches;
  }
  // A cudaMallocAsync of `bytes` at `pointer` from the current device's pool, which then reserves
  // `reserved` bytes (an allocation when the pool grew).
  void pooled(void* pointer, size_t bytes, uint64_t reserved, bool grew) {
    std::lock_guard<std::mutex> lock(mutex_);
    const int device = currentDevice();
    if (grew) ++stats_[size_t(device)].allocations;
    poolBytes_[size_t(device)] = int64_t(reserved);
    poolUsed_[size_t(device)] += int64_t(bytes);
    owners_[pointer] = {device, bytes};
    updateLive(device);
  }
  // A cudaFreeAsync: the block goes back to its pool (still reserved).
  void returned(void* pointer) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = owners_.find(pointer);
    if (found == owners_.end()) return;
    poolUsed_[size_t(found->second.device)] -= int64_t(found->second.bytes);
    updateLive(found->second.device);
    owners_.erase(found);
  }

 private:
  struct Owner {  // of a block taken from a pool
    int device;
    size_t bytes;
  };

  static bool inRange(int device) { return device >= 0 && device < kMaxDevices; }
  // liveBytes: the pool's blocks in use; reservedBytes: what the pool reserves (mutex_ held).
  void updateLive(int device) {
    DeviceStats& s = stats_[size_t(device)];
    s.liveBytes = poolUsed_[size_t(device)];
    s.reservedBytes = poolBytes_[size_t(device)];
    if (s.liveBytes > s.peakBytes) s.peakBytes = s.liveBytes;
  }
  static int currentDevice() {
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || !inRange(device)) device = 0;
    return device;
  }
  DeviceStats& current() { return stats_[size_t(currentDevice())]; }

  std::mutex mutex_;
  std::array<DeviceStats, kMaxDevices> stats_{};
  std::array<int64_t, kMaxDevices> poolBytes_{}, poolUsed_{};
  std::unordered_map<void*, Owner> owners_;
};

}  // namespace moekit::cuda
