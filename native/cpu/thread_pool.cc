#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#ifdef __linux__
#include <sched.h>
#endif

#include "../core/errors.h"

namespace moekit::cpu {

namespace {

// True on the pool's workers and on a caller while its parallel job runs: a parallelFor made
// from there runs serially instead of waiting on workers that are busy with the outer job.
thread_local bool tInsideJob = false;

int64_t chunkCount(int64_t begin, int64_t end, int64_t grain) {
  return (end - begin + grain - 1) / grain;
}

void runSerially(int64_t begin, int64_t end, int64_t grain,
                 const std::function<void(int64_t, int64_t)>& fn) {
  for (int64_t lo = begin; lo < end; lo += grain) fn(lo, std::min(end, lo + grain));
}

int availableCpus() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

constexpr int kMaxThreads = 1024;
constexpr int kWantedBits = 16;  // ticket_ = generation << 16 | workers wanted (< kMaxThreads)
constexpr uint64_t kWantedMask = (uint64_t(1) << kWantedBits) - 1;

// How long a worker keeps polling for the next job, and the caller for the workers to finish,
// before blocking: long enough to bridge the serial code between the GEMMs of one layer step.
constexpr auto kSpin = std::chrono::microseconds(500);

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls done() for up to kSpin; true once it holds.
template <class Done>
bool spinUntil(const Done& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpuRelax();
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
  }
}

int poolSize() {
  const char* env = std::getenv("MOEKIT_NUM_THREADS");
  if (!env || !*env) return availableCpus();
  char* rest = nullptr;
  const long n = std::strtol(env, &rest, 10);
  if (*rest != '\0' || n < 1 || n > kMaxThreads)
    throw Error(ErrorKind::Argument,
                "MOEKIT_NUM_THREADS must be an integer in [1, " + std::to_string(kMaxThreads) +
                    "], got '" + env + "'");
  return int(n);
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads < 1)
    throw Error(ErrorKind::Argument,
                "ThreadPool: threads must be >= 1, got " + std::to_string(threads));
  workers_.reserve(size_t(threads - 1));
  for (int i = 0; i + 1 < threads; ++i) workers_.emplace_back([this, i] { workerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::parallelFor(int64_t begin, int64_t end, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (grain < 1)
    throw Error(ErrorKind::Argument,
                "parallelFor: grain must be >= 1, got " + std::to_string(grain));
  if (end <= begin) return;
  const int64_t chunks = chunkCount(begin, end, grain);
  if (chunks == 1 || workers_.empty() || tInsideJob || !callMutex_.try_lock()) {
    runSerially(begin, end, grain, fn);
    return;
  }
  std::lock_guard<std::mutex> call(callMutex_, std::adopt_lock);
  const int wanted = int(std::min<int64_t>(int64_t(workers_.size()), chunks - 1));
  job_ = Job{&fn, begin, end, grain, chunks};
  nextChunk_.store(0, std::memory_order_relaxed);
  running_.store(wanted, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t generation = (ticket_.load(std::memory_order_relaxed) >> kWantedBits) + 1;
    ticket_.store(generation << kWantedBits | uint64_t(wanted), std::memory_order_release);
  }
  wake_.notify_all();
  tInsideJob = true;
  runChunks();
  tInsideJob = false;
  if (!spinUntil([this] { return running_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return running_.load(std::memory_order_acquire) == 0; });
  }
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::swap(error, error_);
  }
  job_ = Job{};
  if (error) std::rethrow_exception(error);
}

void ThreadPool::runChunks() {
  for (;;) {
    const int64_t c = nextChunk_.fetch_add(1, std::memory_order_relaxed);
    if (c >= job_.chunks) return;
    const int64_t lo = job_.begin + c * job_.grain;
    try {
      (*job_.fn)(lo, std::min(job_.end, lo + job_.grain));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::workerLoop(int index) {
  tInsideJob = true;
  uint64_t seen = 0;  // the ticket of the last job this worker looked at
  const auto published = [&] {
    return stop_.load(std::memory_order_relaxed) ||
           ticket_.load(std::memory_order_acquire) != seen;
  };
  for (;;) {
    if (!spinUntil(published)) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, published);
    }
    if (stop_.load(std::memory_order_relaxed)) return;
    seen = ticket_.load(std::memory_order_acquire);
    if (index >= int(seen & kWantedMask)) continue;
    runChunks();
    if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller may be between check and wait
      done_.notify_one();
    }
  }
}

ThreadPool& cpuThreadPool() {
  static ThreadPool pool(poolSize());
  return pool;
}

void parallelFor(int64_t begin, int64_t end, int64_t grain,
                 const std::function<void(int64_t, int64_t)>& fn) {
  cpuThreadPool().parallelFor(begin, end, grain, fn);
}

}  // namespace moekit::cpu
