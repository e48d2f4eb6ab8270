// A persistent pool of worker threads for the CPU backend's data-parallel loops.
//
// parallelFor(begin, end, grain, fn) splits [begin, end) into fixed chunks of `grain` indices
// (the last may be shorter) and calls fn(lo, hi) once per chunk; the chunks are handed out to the
// calling thread and the workers from an atomic counter. The chunking depends only on
// (begin, end, grain), never on the thread count, so a loop whose chunks write disjoint outputs
// gives the same bits for any MOEKIT_NUM_THREADS (the determinism guarantee).
//
// Size: MOEKIT_NUM_THREADS if set (a positive integer, else Error(Argument) on first use),
// otherwise the CPUs this process may run on (sched_getaffinity, falling back to
// std::thread::hardware_concurrency). The pool holds size − 1 workers: the caller is the last one.
//
// Threading contract: meant to be driven by one thread at a time. A call made while another
// thread's call is in flight, and a call nested inside fn, run serially on the calling thread
// (correct, just not parallel). A single-chunk loop or a one-thread pool wakes nobody. After a
// job, workers poll for the next one for 0.5 ms before sleeping (a futex wake-up costs ~50 µs in
// a VM), so back-to-back loops, e.g. the GEMMs of one layer step, do not pay it each time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moekit::cpu {

class ThreadPool {
 public:
  // threads >= 1, counting the caller.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return int(workers_.size()) + 1; }

  // fn(lo, hi) for every chunk [lo, hi) of [begin, end); grain >= 1. Returns when every chunk has
  // run. The first exception thrown by fn is rethrown here (the other chunks still run).
  void parallelFor(int64_t begin, int64_t end, int64_t grain,
                   const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t begin = 0, end = 0, grain = 1, chunks = 0;
  };

  void workerLoop(int index);
  // Runs chunks of the current job until none is left.
  void runChunks();

  std::vector<std::thread> workers_;
  std::mutex callMutex_;  // held by the thread whose parallelFor is in flight

  // A job is published by storing ticket_ = generation << 16 | workers wanted (release), after
  // job_ and nextChunk_ are set; one atomic word so a worker never pairs one job's generation
  // with another's worker count. Workers index < wanted join, the rest skip the generation.
  Job job_;
  std::atomic<int64_t> nextChunk_{0};  // the next chunk of the current job to hand out
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int> running_{0};  // wanted workers not yet done with the current job

  // Sleeping: workers and the caller spin briefly (wake-ups cost tens of µs, more in a VM), then
  // block on these. Changes that a sleeper waits for are made or signalled under mutex_.
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::exception_ptr error_;  // the first exception of the current job (under mutex_)
  std::atomic<bool> stop_{false};  // set under mutex_ by the destructor
};

// The process-wide pool, created on first use (see the header comment for its size).
ThreadPool& cpuThreadPool();

// cpuThreadPool().parallelFor(begin, end, grain, fn).
void parallelFor(int64_t begin, int64_t end, int64_t grain,
                 const std::function<void(int64_t, int64_t)>& fn);

}  // namespace moekit::cpu
