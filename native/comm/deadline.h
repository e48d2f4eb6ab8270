// Waiting for an asynchronous collective without hanging (communicator.h, "Failure"): the MPI and
// NCCL backends post a collective, then poll it against a Deadline, pausing with a Backoff
// between polls — a short spin for fast collectives, then sleeps growing to 1 ms so a long wait
// does not hold a core.
#pragma once

#include <chrono>
#include <cstdint>
#include <thread>

namespace moekit::comm {

class Deadline {
 public:
  explicit Deadline(int64_t timeoutMs) : end_(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs)) {}
  bool expired() const { return std::chrono::steady_clock::now() >= end_; }

 private:
  std::chrono::steady_clock::time_point end_;
};

class Backoff {
 public:
  void pause() {
    constexpr int kSpins = 256;
    constexpr int64_t kMaxSleepUs = 1000;
    if (spins_ < kSpins) {
      ++spins_;
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(sleepUs_));
    if (sleepUs_ < kMaxSleepUs) sleepUs_ *= 2;
  }

 private:
  int spins_ = 0;
  int64_t sleepUs_ = 8;
};

}  // namespace moekit::comm
