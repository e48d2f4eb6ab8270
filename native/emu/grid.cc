// Grid launcher of the SIMT emulator: validates a launch like the CUDA runtime, opens device memory
// for its duration, and runs its blocks in increasing linear index on the calling thread plus a few
// pool threads (MOEKIT_EMU_THREADS, default: the hardware threads, at most 16). Blocks are handed
// out one at a time, so a block may spin-wait on a lower-indexed one (decoupled look-back) and make
// progress. A watchdog aborts the process, naming the kernel, when one launch runs longer than
// MOEKIT_EMU_TIMEOUT_S seconds (default 120, 0 = never): a thread spinning without __nanosleep
// never yields its fiber, and that must end as an error, not a hang.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "block.h"
#include "cudart_state.h"
#include "device_memory.h"
#include "runtime.h"

namespace moekit::emu {
namespace {

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

long envLong(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

std::atomic<uint64_t> currentSeed{uint64_t(envLong("MOEKIT_EMU_SEED", 20261124))};
std::atomic<uint64_t> launchCounter{0};

// Threads that help the launching thread run blocks. Created on first use; a forked child starts
// over with a new pool (its threads did not survive the fork).
class WorkerPool {
 public:
  explicit WorkerPool(int helpers) {
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { loop(); });
    for (auto& t : threads_) t.detach();
  }
  int helpers() const { return int(threads_.size()); }

  // Runs job on the caller and on up to `helpers` pool threads; returns when every run returned.
  void run(int helpers, const std::function<void()>& job) {
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = &job;
      wanted_ = helpers;
      taken_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    job();
    std::unique_lock<std::mutex> lock(m_);
    wanted_ = taken_;  // helpers that have not started yet are no longer needed
    done_.wait(lock, [this] { return running_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen && taken_ < wanted_; });
      seen = generation_;
      ++taken_;
      ++running_;
      const std::function<void()>* job = job_;
      lock.unlock();
      (*job)();
      lock.lock();
      if (--running_ == 0) done_.notify_all();
    }
  }

  std::mutex m_;
  std::condition_variable wake_, done_;
  const std::function<void()>* job_ = nullptr;
  uint64_t generation_ = 0;
  int wanted_ = 0, taken_ = 0, running_ = 0;
  std::vector<std::thread> threads_;
};

std::mutex poolMutex;  // one launch uses the pool at a time; a concurrent one runs on its caller
WorkerPool* pool = nullptr;

WorkerPool& getPool() {
  if (!pool) {
    static bool atforkInstalled = [] { return pthread_atfork(nullptr, nullptr, [] { pool = nullptr; }) == 0; }();
    (void)atforkInstalled;
    const long threads = envLong("MOEKIT_EMU_THREADS", long(std::max(1u, std::thread::hardware_concurrency())));
    pool = new WorkerPool(int(std::clamp<long>(threads, 1, 16)) - 1);
  }
  return *pool;
}

// The watchdog: one thread, started with the first launch, watching the most recent launch.
struct Watchdog {
  std::mutex m;
  std::condition_variable cv;
  const char* kernel = nullptr;
  std::chrono::steady_clock::time_point started;
  long timeoutSeconds = envLong("MOEKIT_EMU_TIMEOUT_S", 120);
  bool threadStarted = false;

  void begin(const char* name) {
    if (timeoutSeconds <= 0) return;
    std::lock_guard<std::mutex> lock(m);
    kernel = name;
    started = std::chrono::steady_clock::now();
    if (!threadStarted) {
      threadStarted = true;
      std::thread([this] { watch(); }).detach();
    }
  }
  void end() {
    if (timeoutSeconds <= 0) return;
    std::lock_guard<std::mutex> lock(m);
    kernel = nullptr;
  }
  void watch() {
    std::unique_lock<std::mutex> lock(m);
    for (;;) {
      cv.wait_for(lock, std::chrono::seconds(1));
      if (kernel && std::chrono::steady_clock::now() - started > std::chrono::seconds(timeoutSeconds)) {
        std::fprintf(stderr,
                     "moekit emulator: kernel %s has run for more than %ld s (MOEKIT_EMU_TIMEOUT_S): a "
                     "thread spinning without __nanosleep never lets the others of its block run, or the "
                     "kernel does not terminate; aborting\n",
                     kernel, timeoutSeconds);
        std::abort();
      }
    }
  }
};

Watchdog& watchdog() {
  static Watchdog* w = new Watchdog;  // never destroyed: its thread outlives static destruction
  return *w;
}

std::string dims(dim3 d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

// The launch CUDA would refuse, as (error, reason), or (cudaSuccess, "").
std::pair<cudaError_t, std::string> checkConfig(const LaunchSpec& s) {
  const uint64_t threads = uint64_t(s.block.x) * s.block.y * s.block.z;
  if (s.grid.x == 0 || s.grid.y == 0 || s.grid.z == 0 || s.grid.x > 0x7fffffffu || s.grid.y > 65535 ||
      s.grid.z > 65535) {
    return {cudaErrorInvalidConfiguration, "grid " + dims(s.grid) + " is outside (2^31-1, 65535, 65535)"};
  }
  if (threads == 0 || threads > 1024 || s.block.x > 1024 || s.block.y > 1024 || s.block.z > 64) {
    return {cudaErrorInvalidConfiguration,
            "block " + dims(s.block) + " must have 1..1024 threads within (1024, 1024, 64)"};
  }
  const size_t limit = maxDynamicSharedBytes(s.kernelKey);
  if (s.dynamicSmemBytes > limit) {
    return {cudaErrorInvalidValue, std::to_string(s.dynamicSmemBytes) + " bytes of dynamic shared memory exceed " +
                                       std::to_string(limit) +
                                       " (raise it with cudaFuncSetAttribute(kernel, "
                                       "cudaFuncAttributeMaxDynamicSharedMemorySize, bytes))"};
  }
  return {cudaSuccess, ""};
}

}  // namespace

uint64_t seed() { return currentSeed.load(); }
void setSeed(uint64_t s) { currentSeed.store(s); }

void checkPointerArgument(const char* kernel, size_t index, const void* pointer, int device) {
  const int owner = deviceOf(pointer);
  if (owner < 0 || owner == device) return;
  throw KernelFault("kernel " + std::string(kernel) + " launched on cuda:" + std::to_string(device) + " takes argument " +
                    std::to_string(index) + ", memory of cuda:" + std::to_string(owner) +
                    ": a kernel reaches only the memory of the device it runs on (no peer access is modelled)");
}

cudaError_t launchGrid(const LaunchSpec& spec) {
  const int device = streamDevice(spec.stream);
  if (device != currentDevice()) {
    std::fprintf(stderr, "moekit emulator: launch of %s refused: its stream belongs to cuda:%d, the current device is cuda:%d\n",
                 spec.kernelName, device, currentDevice());
    return recordError(cudaErrorInvalidResourceHandle);
  }
  if (const char* outer = currentKernelName()) {
    throw KernelFault(std::string("moekit emulator: kernel ") + outer + " launched " + spec.kernelName +
                      ": launches from device code are not emulated");
  }
  const auto [err, reason] = checkConfig(spec);
  if (err != cudaSuccess) {
    std::fprintf(stderr, "moekit emulator: launch of %s refused: %s\n", spec.kernelName, reason.c_str());
    return recordError(err);
  }

  const uint64_t blocks = uint64_t(spec.grid.x) * spec.grid.y * spec.grid.z;
  const uint64_t launchSeed = mix(seed(), launchCounter.fetch_add(1));
  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex errorMutex;
  std::string error;
  const std::function<void()> job = [&] {
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t b = next.fetch_add(1);
      if (b >= blocks) break;
      const uint3 idx{unsigned(b % spec.grid.x), unsigned(b / spec.grid.x % spec.grid.y),
                      unsigned(b / (uint64_t(spec.grid.x) * spec.grid.y))};
      std::string failure;
      try {
        runBlock(spec, idx, mix(launchSeed, b));
      } catch (const std::exception& e) {
        failure = e.what();
      }
      if (!failure.empty()) {
        std::lock_guard<std::mutex> lock(errorMutex);
        if (error.empty()) error = failure;
        stop = true;
      }
    }
  };

  spec.checkPointers(spec.params, spec.kernelName, device);
  DeviceAccess access(device);
  watchdog().begin(spec.kernelName);
  {
    std::unique_lock<std::mutex> poolLock(poolMutex, std::try_to_lock);
    if (poolLock.owns_lock() && blocks > 1) {
      WorkerPool& p = getPool();
      p.run(int(std::min<uint64_t>(uint64_t(p.helpers()), blocks - 1)), job);
    } else {
      job();
    }
  }
  watchdog().end();
  if (!error.empty()) throw KernelFault(error);
  return cudaSuccess;
}

}  // namespace moekit::emu
