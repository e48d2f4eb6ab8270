#include "storage.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace moekit::cpu {

std::atomic<int64_t> Storage::live_{0};

namespace {
constexpr size_t kAlignment = 64;
}

Storage::Storage(size_t bytes) : data_(nullptr), bytes_(bytes) {
  if (bytes == 0) return;
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  data_ = std::aligned_alloc(kAlignment, rounded);
  if (data_ == nullptr) throw std::bad_alloc();
  std::memset(data_, 0, rounded);
  live_ += int64_t(bytes);
}

Storage::~Storage() { release(); }

size_t Storage::release() {
  if (released_) return 0;
  released_ = true;
  if (data_ == nullptr) return 0;
  std::free(data_);
  data_ = nullptr;
  live_ -= int64_t(bytes_);
  return bytes_;
}

int64_t Storage::liveBytes() { return live_.load(); }

}  // namespace moekit::cpu
