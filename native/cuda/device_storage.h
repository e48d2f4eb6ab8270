// The storage of a cuda tensor (DESIGN §2b): bytes on one CUDA device, from that device's memory
// pool (runtime_calls.h mallocAsync: the pool keeps freed blocks reserved, so a tensor freed and
// allocated again in a training loop costs no device allocation), zero-filled and freed on its
// stream (staging.h deviceStream), so work enqueued before a free finishes before the memory is
// reused. The host has no view of it: bytes reach it through readBytes (waits) and writeBytes
// (through pinned staging). This header needs no CUDA toolkit: the addon includes it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moekit::cuda {

class DeviceStorage {
 public:
  // Zero-filled storage of `bytes` bytes on cuda:`device` (made current). Throws Error(Device)
  // naming the size when the device cannot give it.
  DeviceStorage(int device, size_t bytes);
  ~DeviceStorage();
  DeviceStorage(const DeviceStorage&) = delete;
  DeviceStorage& operator=(const DeviceStorage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  bool released() const { return released_; }
  // Returns the memory to the pool, ordered after the work enqueued so far; returns the bytes
  // freed (0 when already released).
  size_t release();

  // Host ← device: copies the first `bytes` bytes and waits for them (one synchronisation).
  void readBytes(void* host, size_t bytes) const;
  // Device ← host at byte `offset`: the bytes go through a pinned staging buffer of the device, so
  // the copy is asynchronous and the caller's memory may be reused on return.
  void writeBytes(size_t offset, const void* host, size_t bytes);
  // Counts the writes of the storage: writeBytes, zero and copyFrom bump it, and so must every
  // other writer (markWritten), so that what a stage derives from the bytes (the bf16 / fp8
  // operands of a weight) can be kept while the version is unchanged.
  const uint64_t* version() const { return &version_; }
  void markWritten() { ++version_; }

  // Sets every byte to 0, ordered on this device's stream.
  void zero();
  // Device ← device: `bytes` bytes of `source` (any device) to byte 0, ordered on this device's stream.
  void copyFrom(const DeviceStorage& source, size_t bytes);

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
  bool released_ = false;
  uint64_t version_ = 0;
};

}  // namespace moekit::cuda
