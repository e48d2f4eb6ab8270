// Host memory of a CPU tensor: 64-byte aligned (one cache line, the widest SIMD load), freed
// either explicitly (Tensor.dispose) or when the last owner lets go.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace moekit::cpu {

class Storage {
 public:
  // Zero-filled storage of `bytes` bytes; throws std::bad_alloc when the allocation fails.
  explicit Storage(size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  bool released() const { return released_; }
  // Frees the memory now; returns the number of bytes freed (0 when already released).
  size_t release();

  // Bytes held by all live storages of the process (the addon's own allocation counter).
  static int64_t liveBytes();

 private:
  void* data_;
  size_t bytes_;
  bool released_ = false;
  static std::atomic<int64_t> live_;
};

}  // namespace moekit::cpu
