// The block scheduler of the SIMT emulator (see block.h for the model and what it detects).
#include "block.h"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "builtins.h"
#include "fiber.h"

__thread uint3 threadIdx;
__thread uint3 blockIdx;
__thread dim3 blockDim;
__thread dim3 gridDim;

namespace moekit::emu {
namespace {

enum class State : uint8_t { Ready, Running, AtBarrier, AtWarpOp, Exited };

struct AsyncCopy {
  void* dst;
  const void* src;
  unsigned copyBytes, srcBytes;
  uint64_t group;
};

// A wgmma op not yet completed; group = the wgmma commit count when issued.
struct PendingWgmma {
  WgmmaOp op;
  uint64_t group;
  Site site;
};

// Accumulator registers under pending wgmma ops: their values (the registers themselves read as
// poison meanwhile) and how many ops still have to run on them.
struct HeldAccumulators {
  float* d;
  unsigned count;
  std::vector<float> values;
  int pending;
};

// The n-th wgmma of a warpgroup, as the first of its threads issued it.
struct WgmmaRecord {
  uint64_t signature;
  Site site;
  int thread;
};

struct Thread {
  State state = State::Ready;
  FiberSp sp = nullptr;
  uint3 tid{};
  Site site{nullptr, 0, nullptr};  // where it waits (barrier or collective)
  // Barrier result, written when the barrier releases.
  int barrierCount = 0;
  int barrierArrived = 0;
  // The posted collective and its result.
  WarpOp op = WarpOp::SyncWarp;
  unsigned mask = 0;
  int arg = 0;
  int width = 32;
  uint64_t value = 0;
  WarpResult result{0, 0};
  // cp.async copies not yet landed, in issue order; group = the commit count when issued, so the
  // open (uncommitted) copies have group == asyncCommits.
  std::vector<AsyncCopy> asyncCopies;
  uint64_t asyncCommits = 0;
  // Where this thread's cp.async copies last landed with no fence.proxy.async since (file null:
  // nowhere).
  Site unfencedLanding{nullptr, 0, nullptr};
  // wgmma: pending ops in issue order, the accumulators they hold, the commit and issue counts, and
  // whether a wgmma.fence came since the start or the last wait.
  std::vector<PendingWgmma> wgmmas;
  std::vector<HeldAccumulators> held;
  uint64_t wgmmaCommits = 0;
  uint64_t wgmmaIssued = 0;
  bool wgmmaFenced = false;
};

// splitmix64: a small, good generator; one per block, seeded from (seed, launch, block).
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return size_t(next() % n); }
};

bool sameSite(const Site& a, const Site& b) {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

std::string where(const Site& s) {
  return std::string(s.file) + ":" + std::to_string(s.line) + " (in " + s.function + ")";
}

const char* opName(WarpOp op) {
  switch (op) {
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::SyncWarp: return "__syncwarp";
    case WarpOp::MatchAny: return "__match_any_sync";
    case WarpOp::MatchAll: return "__match_all_sync";
    case WarpOp::ReduceAddU: return "__reduce_add_sync";
    case WarpOp::ReduceMinU: case WarpOp::ReduceMinI: return "__reduce_min_sync";
    case WarpOp::ReduceMaxU: case WarpOp::ReduceMaxI: return "__reduce_max_sync";
    case WarpOp::ReduceAnd: return "__reduce_and_sync";
    case WarpOp::ReduceOr: return "__reduce_or_sync";
    case WarpOp::ReduceXor: return "__reduce_xor_sync";
  }
  return "?";
}

bool isShfl(WarpOp op) {
  return op == WarpOp::ShflIdx || op == WarpOp::ShflUp || op == WarpOp::ShflDown || op == WarpOp::ShflXor;
}

std::string hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string hex(const void* p) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// "0-15,32,40-47" for a sorted list of indices.
std::string ranges(const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(ids[i]);
    if (j > i) out += "-" + std::to_string(ids[j]);
    i = j + 1;
  }
  return out;
}

// PTX shfl.sync source lane: c = ((32-width)<<8) | 0x1f (up: without the 0x1f clamp), b = arg[4:0];
// returns the lane to read, or -1 when the computed lane is out of the segment (own value).
int shflSource(WarpOp op, int lane, int arg, int width) {
  const int segmask = (32 - width) & 0x1f;
  const int clamp = op == WarpOp::ShflUp ? 0 : 0x1f;
  const int maxLane = (lane & segmask) | (clamp & ~segmask);
  const int minLane = lane & segmask;
  const int b = arg & 0x1f;
  int j = lane;
  bool valid = false;
  switch (op) {
    case WarpOp::ShflUp: j = lane - b; valid = j >= maxLane; break;
    case WarpOp::ShflDown: j = lane + b; valid = j <= maxLane; break;
    case WarpOp::ShflXor: j = lane ^ b; valid = j <= maxLane; break;
    default: j = minLane | (b & ~segmask); valid = j <= maxLane; break;
  }
  return valid ? j : -1;
}

class BlockRunner {
 public:
  void run(const LaunchSpec& spec, uint3 block, uint64_t blockSeed);

  int syncThreads(BarrierOp op, int predicate, const Site& site);
  WarpResult warpCollective(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const Site& site);
  unsigned activeMask() const;
  void yield();
  void asyncCopyIssue(void* dst, const void* src, unsigned copyBytes, unsigned srcBytes, const Site& site);
  void asyncCopyCommit() { ++threads_[size_t(current_)].asyncCommits; }
  void asyncCopyWait(int pendingGroups, const Site& site);
  void wgmmaFence() { threads_[size_t(current_)].wgmmaFenced = true; }
  void wgmmaIssue(WgmmaOp op, const Site& site);
  void wgmmaCommit() { ++threads_[size_t(current_)].wgmmaCommits; }
  void wgmmaWait(int pendingGroups, const Site& site);
  void fenceProxyAsync() { threads_[size_t(current_)].unfencedLanding = Site{nullptr, 0, nullptr}; }
  uint32_t sharedOffset(const void* p, const Site& site);
  void* dynamicShared() { return smem_; }
  const LaunchSpec* spec() const { return spec_; }
  bool inKernel() const { return current_ >= 0; }

 private:
  static void fiberEntry(void* self);
  [[noreturn]] void exitCurrent();
  [[noreturn]] void fail(const std::string& message);
  void park() { switchTo(&threads_[size_t(current_)].sp, schedulerSp_); }
  void makeReady(int t) {
    threads_[size_t(t)].state = State::Ready;
    ready_.push_back(t);
  }
  void releaseBarrier();
  bool groupComplete(int base, unsigned mask, WarpOp op, const Site& site) const;
  void completeGroup(int base, unsigned mask);
  std::string describeStall() const;
  std::string describeWarp(int base) const;
  int lanesInWarp(int base) const { return std::min(32, int(threads_.size()) - base); }

  const LaunchSpec* spec_ = nullptr;
  uint3 block_{};
  std::vector<Thread> threads_;
  std::vector<int> ready_;
  Rng rng_{0};
  FiberSp schedulerSp_ = nullptr;
  int current_ = -1;
  int live_ = 0;
  int atBarrier_ = 0;
  int barrierCount_ = 0;
  Site barrierSite_{nullptr, 0, nullptr};
  std::string fault_;
  std::vector<std::vector<WgmmaRecord>> warpgroupIssues_;  // per warpgroup
  std::unique_ptr<unsigned char[]> smemStorage_;
  size_t smemCapacity_ = 0;
  unsigned char* smem_ = nullptr;
};

thread_local BlockRunner* tlsRunner = nullptr;

BlockRunner& runner(const char* what, const Site& site) {
  BlockRunner* r = tlsRunner;
  if (!r || !r->inKernel()) misuse(what, site);
  return *r;
}

// A fault handler needs its own stack to report a fiber stack overflow; install one per OS thread
// that runs blocks unless the thread already has one.
void ensureAltStack() {
  thread_local bool done = false;
  if (done) return;
  done = true;
  stack_t current;
  if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;
  static constexpr size_t kBytes = 64 * 1024;
  stack_t alt{};
  alt.ss_sp = std::malloc(kBytes);  // lives as long as the thread; never freed
  alt.ss_size = kBytes;
  if (alt.ss_sp) sigaltstack(&alt, nullptr);
}

void BlockRunner::run(const LaunchSpec& spec, uint3 block, uint64_t blockSeed) {
  ensureAltStack();
  spec_ = &spec;
  block_ = block;
  rng_ = Rng{blockSeed};
  const int n = int(spec.block.x * spec.block.y * spec.block.z);
  StackPool& pool = StackPool::forThisThread();
  pool.reserve(n);
  threads_.assign(size_t(n), Thread{});
  ready_.clear();
  for (int i = 0; i < n; ++i) {
    Thread& t = threads_[size_t(i)];
    t.tid = uint3{unsigned(i) % spec.block.x, (unsigned(i) / spec.block.x) % spec.block.y,
                  unsigned(i) / (spec.block.x * spec.block.y)};
    t.sp = makeFiber(pool.top(i), &BlockRunner::fiberEntry, this);
    ready_.push_back(i);
  }
  live_ = n;
  warpgroupIssues_.assign(size_t((n + 127) / 128), {});
  atBarrier_ = 0;
  barrierCount_ = 0;
  fault_.clear();
  if (spec.dynamicSmemBytes > smemCapacity_) {
    smemCapacity_ = spec.dynamicSmemBytes;
    smemStorage_.reset(new unsigned char[smemCapacity_ + 128]);
  }
  smem_ = smemStorage_ ? reinterpret_cast<unsigned char*>(
                             (reinterpret_cast<uintptr_t>(smemStorage_.get()) + 127) & ~uintptr_t(127))
                       : nullptr;
  if (smem_) std::memset(smem_, 0xff, spec.dynamicSmemBytes);

  blockIdx = block;
  blockDim = spec.block;
  gridDim = spec.grid;
  BlockRunner* outer = tlsRunner;
  tlsRunner = this;
  while (!ready_.empty() && fault_.empty()) {
    const size_t pick = rng_.below(ready_.size());
    current_ = ready_[pick];
    ready_[pick] = ready_.back();
    ready_.pop_back();
    Thread& t = threads_[size_t(current_)];
    t.state = State::Running;
    threadIdx = t.tid;
    switchTo(&schedulerSp_, t.sp);
  }
  current_ = -1;
  tlsRunner = outer;
  std::string message = fault_;
  if (message.empty() && live_ > 0) message = describeStall();
  if (!message.empty()) {
    throw KernelFault("moekit emulator: kernel " + std::string(spec.kernelName) + ", block (" +
                      std::to_string(block.x) + "," + std::to_string(block.y) + "," + std::to_string(block.z) +
                      "): " + message);
  }
}

void BlockRunner::fiberEntry(void* self) {
  auto* r = static_cast<BlockRunner*>(self);
  std::string thrown;
  try {
    r->spec_->body(r->spec_->params);
  } catch (const std::exception& e) {
    thrown = std::string("the kernel threw a C++ exception: ") + e.what();
  } catch (...) {
    thrown = "the kernel threw a C++ exception";
  }
  if (!thrown.empty()) r->fail(thrown);  // outside the handler: the fiber never resumes
  r->exitCurrent();
}

void BlockRunner::fail(const std::string& message) {
  if (fault_.empty()) fault_ = message;
  park();
  std::abort();  // a failed fiber is never resumed
}

void BlockRunner::exitCurrent() {
  Thread& me = threads_[size_t(current_)];
  me.state = State::Exited;
  me.asyncCopies.clear();  // cp.async copies it never waited for never land
  if (!me.wgmmas.empty()) {
    fail("thread " + std::to_string(current_) + " exited with " + std::to_string(me.wgmmas.size()) +
         " wgmma op(s) pending, the first issued at " + where(me.wgmmas.front().site) +
         ": wgmma.wait_group must complete them");
  }
  --live_;
  const int lane = current_ & 31;
  const int base = current_ - lane;
  std::vector<int> waiting;
  const Thread* pending = nullptr;
  for (int j = 0; j < lanesInWarp(base); ++j) {
    const Thread& other = threads_[size_t(base + j)];
    if (other.state == State::AtWarpOp && (other.mask >> lane & 1u)) {
      waiting.push_back(j);
      pending = &other;
    }
  }
  if (pending) {
    fail("lane " + std::to_string(lane) + " of warp " + std::to_string(current_ / 32) + " (thread " +
         std::to_string(current_) + ") exited while lanes " + ranges(waiting) + " wait for it in " +
         opName(pending->op) + " with mask " + hex(pending->mask) + " at " + where(pending->site));
  }
  if (atBarrier_ > 0 && atBarrier_ == live_) releaseBarrier();
  park();
  std::abort();  // an exited fiber is never resumed
}

void BlockRunner::releaseBarrier() {
  for (size_t i = 0; i < threads_.size(); ++i) {
    Thread& t = threads_[i];
    if (t.state != State::AtBarrier) continue;
    t.barrierCount = barrierCount_;
    t.barrierArrived = atBarrier_;
    makeReady(int(i));
  }
  atBarrier_ = 0;
  barrierCount_ = 0;
}

int BlockRunner::syncThreads(BarrierOp op, int predicate, const Site& site) {
  Thread& me = threads_[size_t(current_)];
  if (atBarrier_ == 0) {
    barrierSite_ = site;
  } else if (!sameSite(site, barrierSite_)) {
    std::vector<int> there;
    for (size_t i = 0; i < threads_.size(); ++i) {
      if (threads_[i].state == State::AtBarrier) there.push_back(int(i));
    }
    fail("divergent __syncthreads: thread " + std::to_string(current_) + " reached the one at " + where(site) +
         " while threads " + ranges(there) + " wait at the one at " + where(barrierSite_));
  }
  me.state = State::AtBarrier;
  me.site = site;
  ++atBarrier_;
  barrierCount_ += predicate != 0;
  if (atBarrier_ == live_) releaseBarrier();
  park();
  switch (op) {
    case BarrierOp::Count: return me.barrierCount;
    case BarrierOp::And: return me.barrierCount == me.barrierArrived;
    case BarrierOp::Or: return me.barrierCount > 0;
    case BarrierOp::Sync: break;
  }
  return 0;
}

WarpResult BlockRunner::warpCollective(WarpOp op, unsigned mask, uint64_t value, int arg, int width,
                                       const Site& site) {
  const int lane = current_ & 31;
  const int base = current_ - lane;
  const int lanes = lanesInWarp(base);
  auto call = [&] { return std::string(opName(op)) + " with mask " + hex(mask) + " at " + where(site); };
  if (!(mask >> lane & 1u)) {
    fail(call() + ": the mask omits the calling lane " + std::to_string(lane) + " (thread " +
         std::to_string(current_) + ")");
  }
  if (isShfl(op) && (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
    fail(call() + ": width " + std::to_string(width) + " is not a power of two in [1, 32]");
  }
  for (int j = 0; j < 32; ++j) {
    if (!(mask >> j & 1u)) continue;
    if (j >= lanes) {
      fail(call() + ": the mask names lane " + std::to_string(j) + ", which does not exist (the block has " +
           std::to_string(threads_.size()) + " threads, so warp " + std::to_string(base / 32) + " has " +
           std::to_string(lanes) + " lanes)");
    }
    if (threads_[size_t(base + j)].state == State::Exited) {
      fail(call() + ": the mask names lane " + std::to_string(j) + " (thread " + std::to_string(base + j) +
           "), which has exited");
    }
  }
  Thread& me = threads_[size_t(current_)];
  me.state = State::AtWarpOp;
  me.site = site;
  me.op = op;
  me.mask = mask;
  me.arg = arg;
  me.width = width;
  me.value = value;
  if (groupComplete(base, mask, op, site)) completeGroup(base, mask);
  park();
  return me.result;
}

bool BlockRunner::groupComplete(int base, unsigned mask, WarpOp op, const Site& site) const {
  for (int j = 0; j < 32; ++j) {
    if (!(mask >> j & 1u)) continue;
    const Thread& t = threads_[size_t(base + j)];
    if (t.state != State::AtWarpOp || t.op != op || t.mask != mask) return false;
    // bar.warp.sync (sm_70+) may be executed at different instructions; the others may not.
    if (op != WarpOp::SyncWarp && !sameSite(t.site, site)) return false;
  }
  return true;
}

void BlockRunner::completeGroup(int base, unsigned mask) {
  Thread* lane[32] = {};
  for (int j = 0; j < 32; ++j) {
    if (mask >> j & 1u) lane[j] = &threads_[size_t(base + j)];
  }
  unsigned votes = 0;
  for (int j = 0; j < 32; ++j) {
    if (lane[j] && lane[j]->value != 0) votes |= 1u << j;
  }
  for (int i = 0; i < 32; ++i) {
    if (!lane[i]) continue;
    Thread& t = *lane[i];
    WarpResult r{0, 0};
    switch (t.op) {
      case WarpOp::ShflIdx:
      case WarpOp::ShflUp:
      case WarpOp::ShflDown:
      case WarpOp::ShflXor: {
        const int j = shflSource(t.op, i, t.arg, t.width);
        if (j < 0) r.value = t.value;
        else r.value = lane[j] ? lane[j]->value : ~uint64_t(0);  // source outside the mask: undefined
        break;
      }
      case WarpOp::Ballot: r.value = votes; break;
      case WarpOp::Any: r.value = votes != 0; break;
      case WarpOp::All: r.value = votes == mask; break;
      case WarpOp::SyncWarp: break;
      case WarpOp::MatchAny:
        for (int j = 0; j < 32; ++j) {
          if (lane[j] && lane[j]->value == t.value) r.value |= 1u << j;
        }
        break;
      case WarpOp::MatchAll:
        r.pred = 1;
        for (int j = 0; j < 32; ++j) {
          if (lane[j] && lane[j]->value != t.value) r.pred = 0;
        }
        r.value = r.pred ? mask : 0;
        break;
      default: {
        bool first = true;
        uint32_t acc = 0;
        for (int j = 0; j < 32; ++j) {
          if (!lane[j]) continue;
          const uint32_t v = uint32_t(lane[j]->value);
          if (first) {
            acc = v;
            first = false;
            continue;
          }
          switch (t.op) {
            case WarpOp::ReduceAddU: acc += v; break;
            case WarpOp::ReduceMinU: acc = std::min(acc, v); break;
            case WarpOp::ReduceMaxU: acc = std::max(acc, v); break;
            case WarpOp::ReduceMinI: acc = uint32_t(std::min(int32_t(acc), int32_t(v))); break;
            case WarpOp::ReduceMaxI: acc = uint32_t(std::max(int32_t(acc), int32_t(v))); break;
            case WarpOp::ReduceAnd: acc &= v; break;
            case WarpOp::ReduceOr: acc |= v; break;
            default: acc ^= v; break;
          }
        }
        r.value = acc;
        break;
      }
    }
    t.result = r;
  }
  for (int j = 0; j < 32; ++j) {
    if (lane[j]) makeReady(base + j);
  }
}

unsigned BlockRunner::activeMask() const {
  const int base = current_ & ~31;
  unsigned mask = 0;
  for (int j = 0; j < lanesInWarp(base); ++j) {
    if (threads_[size_t(base + j)].state != State::Exited) mask |= 1u << j;
  }
  return mask;
}

void BlockRunner::yield() {
  ready_.push_back(current_);
  threads_[size_t(current_)].state = State::Ready;
  park();
}

void BlockRunner::asyncCopyIssue(void* dst, const void* src, unsigned copyBytes, unsigned srcBytes,
                                 const Site& site) {
  const auto misaligned = [copyBytes](const void* p) { return reinterpret_cast<uintptr_t>(p) % copyBytes != 0; };
  if ((copyBytes != 4 && copyBytes != 8 && copyBytes != 16) || srcBytes > copyBytes) {
    fail("cp.async at " + where(site) + ": copies 4, 8 or 16 bytes reading at most that many, got " +
         std::to_string(copyBytes) + " reading " + std::to_string(srcBytes));
  }
  if (misaligned(dst) || (srcBytes > 0 && misaligned(src))) {
    fail("cp.async at " + where(site) + " (thread " + std::to_string(current_) + "): destination " + hex(dst) +
         " and source " + hex(src) + " must be aligned to the " + std::to_string(copyBytes) + "-byte copy");
  }
  Thread& me = threads_[size_t(current_)];
  std::memset(dst, 0xff, copyBytes);
  me.asyncCopies.push_back(AsyncCopy{dst, src, copyBytes, srcBytes, me.asyncCommits});
}

void BlockRunner::asyncCopyWait(int pendingGroups, const Site& site) {
  if (pendingGroups < 0) fail("cp.async.wait_group at " + where(site) + ": negative group count");
  Thread& me = threads_[size_t(current_)];
  size_t landed = 0;
  for (; landed < me.asyncCopies.size(); ++landed) {
    const AsyncCopy& c = me.asyncCopies[landed];
    if (c.group + uint64_t(pendingGroups) >= me.asyncCommits) break;
    unsigned char* dst = static_cast<unsigned char*>(c.dst);
    if (c.srcBytes > 0) std::memcpy(dst, c.src, c.srcBytes);
    std::memset(dst + c.srcBytes, 0, c.copyBytes - c.srcBytes);
  }
  me.asyncCopies.erase(me.asyncCopies.begin(), me.asyncCopies.begin() + std::ptrdiff_t(landed));
  if (landed > 0) me.unfencedLanding = site;
}

void BlockRunner::wgmmaIssue(WgmmaOp op, const Site& site) {
  Thread& me = threads_[size_t(current_)];
  const int warpgroup = current_ / 128;
  const std::string who = "wgmma.mma_async at " + where(site) + " (thread " + std::to_string(current_) + ")";
  if (size_t(128 * (warpgroup + 1)) > threads_.size()) {
    fail(who + ": its warpgroup (threads " + std::to_string(128 * warpgroup) + "-" +
         std::to_string(128 * warpgroup + 127) + ") is incomplete in a block of " + std::to_string(threads_.size()) +
         " threads");
  }
  if (!me.wgmmaFenced) {
    fail(who + ": no wgmma.fence since the accumulators were last accessible (the thread's start or its last "
               "wgmma.wait_group)");
  }
  for (size_t u = 0; u < threads_.size(); ++u) {
    const Thread& t = threads_[u];
    if (t.unfencedLanding.file) {
      fail(who + ": reads shared memory through the async proxy, but thread " + std::to_string(u) +
           "'s cp.async copies landed at " + where(t.unfencedLanding) + " with no fence.proxy.async since");
    }
  }
  std::vector<WgmmaRecord>& issues = warpgroupIssues_[size_t(warpgroup)];
  const uint64_t n = me.wgmmaIssued++;
  if (n < issues.size()) {
    const WgmmaRecord& first = issues[size_t(n)];
    if (first.signature != op.signature || !sameSite(first.site, site)) {
      fail(who + ": wgmma number " + std::to_string(n) + " of warpgroup " + std::to_string(warpgroup) +
           " differs from thread " + std::to_string(first.thread) + "'s at " + where(first.site) +
           " (a warpgroup issues the same wgmma, with the same descriptors, in every thread)");
    }
  } else {
    issues.push_back(WgmmaRecord{op.signature, site, current_});
  }
  auto held = std::find_if(me.held.begin(), me.held.end(), [&](const HeldAccumulators& h) { return h.d == op.d; });
  if (held == me.held.end()) {
    me.held.push_back(HeldAccumulators{op.d, op.count, std::vector<float>(op.d, op.d + op.count), 0});
    held = me.held.end() - 1;
    std::memset(op.d, 0xff, op.count * sizeof(float));
  } else if (held->count != op.count) {
    fail(who + ": its accumulators overlap a pending op's of another size");
  }
  ++held->pending;
  me.wgmmas.push_back(PendingWgmma{std::move(op), me.wgmmaCommits, site});
}

void BlockRunner::wgmmaWait(int pendingGroups, const Site& site) {
  if (pendingGroups < 0) fail("wgmma.wait_group at " + where(site) + ": negative group count");
  Thread& me = threads_[size_t(current_)];
  size_t done = 0;
  for (; done < me.wgmmas.size(); ++done) {
    PendingWgmma& w = me.wgmmas[done];
    if (w.group + uint64_t(pendingGroups) >= me.wgmmaCommits) break;
    auto held = std::find_if(me.held.begin(), me.held.end(), [&](const HeldAccumulators& h) { return h.d == w.op.d; });
    w.op.multiply(held->values.data());
    if (--held->pending == 0) {
      std::copy(held->values.begin(), held->values.end(), held->d);
      me.held.erase(held);
    }
  }
  me.wgmmas.erase(me.wgmmas.begin(), me.wgmmas.begin() + std::ptrdiff_t(done));
  me.wgmmaFenced = false;
}

uint32_t BlockRunner::sharedOffset(const void* p, const Site& site) {
  const auto* byte = static_cast<const unsigned char*>(p);
  if (!smem_ || byte < smem_ || byte >= smem_ + spec_->dynamicSmemBytes) {
    fail("shared address at " + where(site) + ": " + hex(p) +
         " is not in the block's dynamic shared memory (the emulator's shared window)");
  }
  return uint32_t(byte - smem_);
}

// Where every lane of the warp at `base` is: "lanes 0-15 at __shfl_sync ... ; lanes 16-31 at ...".
std::string BlockRunner::describeWarp(int base) const {
  std::vector<bool> done(32, false);
  std::string out;
  for (int i = 0; i < lanesInWarp(base); ++i) {
    if (done[size_t(i)]) continue;
    const Thread& t = threads_[size_t(base + i)];
    std::vector<int> same;
    for (int j = i; j < lanesInWarp(base); ++j) {
      const Thread& u = threads_[size_t(base + j)];
      const bool match = u.state == t.state &&
                         (t.state == State::Exited ||
                          (sameSite(u.site, t.site) && (t.state != State::AtWarpOp || (u.op == t.op && u.mask == t.mask))));
      if (!done[size_t(j)] && match) {
        same.push_back(j);
        done[size_t(j)] = true;
      }
    }
    const bool one = same.size() == 1;
    out += out.empty() ? "" : "; ";
    out += (one ? "lane " : "lanes ") + ranges(same);
    if (t.state == State::Exited) out += one ? " has exited" : " have exited";
    else if (t.state == State::AtBarrier) out += (one ? " waits" : " wait") + std::string(" at __syncthreads at ") + where(t.site);
    else out += (one ? " waits in " : " wait in ") + std::string(opName(t.op)) + " with mask " + hex(t.mask) + " at " + where(t.site);
  }
  return out;
}

std::string BlockRunner::describeStall() const {
  int stuck = -1;
  for (size_t i = 0; i < threads_.size() && stuck < 0; ++i) {
    if (threads_[i].state == State::AtWarpOp) stuck = int(i);
  }
  std::vector<int> atBarrier;
  for (size_t i = 0; i < threads_.size(); ++i) {
    if (threads_[i].state == State::AtBarrier) atBarrier.push_back(int(i));
  }
  if (stuck < 0) return "no thread can run (threads " + ranges(atBarrier) + " wait at __syncthreads)";
  const Thread& s = threads_[size_t(stuck)];
  const int base = stuck & ~31;
  bool blockedByBarrier = false;
  for (int j = 0; j < 32; ++j) {
    if ((s.mask >> j & 1u) && threads_[size_t(base + j)].state == State::AtBarrier) blockedByBarrier = true;
  }
  std::string out = blockedByBarrier
                        ? "deadlock at __syncthreads: lanes of a warp collective wait for lanes that wait at "
                          "__syncthreads"
                        : std::string("divergent ") + opName(s.op) +
                              ": the lanes named in its mask are at different calls";
  out += ". Warp " + std::to_string(base / 32) + ": " + describeWarp(base) + ".";
  if (!atBarrier.empty()) {
    out += (atBarrier.size() == 1 ? " Thread " : " Threads ") + ranges(atBarrier) +
           (atBarrier.size() == 1 ? " waits" : " wait") + " at __syncthreads at " +
           where(threads_[size_t(atBarrier[0])].site) + ".";
  }
  return out;
}

}  // namespace

void runBlock(const LaunchSpec& spec, uint3 block, uint64_t blockSeed) {
  thread_local BlockRunner blockRunner;
  blockRunner.run(spec, block, blockSeed);
}

const char* currentKernelName() {
  const BlockRunner* r = tlsRunner;
  return r && r->inKernel() ? r->spec()->kernelName : nullptr;
}

int syncThreads(BarrierOp op, int predicate, const Site& site) {
  return runner("__syncthreads", site).syncThreads(op, predicate, site);
}

WarpResult warpCollective(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const Site& site) {
  return runner(opName(op), site).warpCollective(op, mask, value, arg, width, site);
}

unsigned activeMask() { return runner("__activemask", Site{}).activeMask(); }

void yieldThread() { runner("__nanosleep", Site{}).yield(); }

void* dynamicSharedBase() { return runner("moekit::dynamicShared", Site{}).dynamicShared(); }

void asyncCopyIssue(void* dst, const void* src, unsigned copyBytes, unsigned srcBytes, const Site& site) {
  runner("cp.async", site).asyncCopyIssue(dst, src, copyBytes, srcBytes, site);
}

void asyncCopyCommit(const Site& site) { runner("cp.async.commit_group", site).asyncCopyCommit(); }

void asyncCopyWait(int pendingGroups, const Site& site) {
  runner("cp.async.wait_group", site).asyncCopyWait(pendingGroups, site);
}

void wgmmaFence(const Site& site) { runner("wgmma.fence", site).wgmmaFence(); }

void wgmmaIssue(WgmmaOp op, const Site& site) { runner("wgmma.mma_async", site).wgmmaIssue(std::move(op), site); }

void wgmmaCommit(const Site& site) { runner("wgmma.commit_group", site).wgmmaCommit(); }

void wgmmaWait(int pendingGroups, const Site& site) { runner("wgmma.wait_group", site).wgmmaWait(pendingGroups, site); }

void fenceProxyAsync(const Site& site) { runner("fence.proxy.async", site).fenceProxyAsync(); }

uint32_t sharedOffset(const void* p, const Site& site) { return runner("a shared address", site).sharedOffset(p, site); }

void misuse(const char* what, const Site& site) {
  std::fprintf(stderr, "moekit emulator: %s called outside a kernel launched by moekit::launch, at %s:%d (in %s)\n",
               what, site.file, site.line, site.function);
  std::abort();
}

}  // namespace moekit::emu
