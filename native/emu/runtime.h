// The SIMT emulator's runtime interface: what builtins.h and launch.h call into. Kernel code never
// uses these names directly; it uses the CUDA built-ins (builtins.h) and moekit::launch (launch.h).
//
// Model: a launch runs every block of the grid (blocks spread over a few OS threads, dispatched in
// increasing linear index); the threads of one block are fibers on one OS thread, scheduled in a
// seeded random order and switched only at __syncthreads, warp-synchronous intrinsics, __nanosleep
// and thread exit. Every kernel bug the emulator can see (divergent warp collectives, masks naming
// exited lanes, __syncthreads deadlock or divergence) ends the launch with a KernelFault naming the
// kernel, the block and the source lines involved.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace moekit::emu {

// Where a built-in was called from; the defaulted arguments capture the caller's location.
struct Site {
  const char* file;
  int line;
  const char* function;
  Site(const char* f = __builtin_FILE(), int l = __builtin_LINE(), const char* fn = __builtin_FUNCTION())
      : file(f), line(l), function(fn) {}
};

// A bug in a kernel found while running it. Thrown from moekit::launch on the launching thread.
class KernelFault : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One kernel launch. body(params) runs the kernel for the calling fiber's thread;
// checkPointers(params, kernel, device) throws KernelFault for a pointer argument into another
// device's memory (checkPointerArgument on each).
struct LaunchSpec {
  const char* kernelName;
  const void* kernelKey;  // the kernel's address, as cudaFuncSetAttribute sees it
  dim3 grid;
  dim3 block;
  size_t dynamicSmemBytes;
  cudaStream_t stream;
  void (*body)(const void* params);
  void (*checkPointers)(const void* params, const char* kernel, int device);
  const void* params;
};

// KernelFault when `pointer`, argument `index` of `kernel`, points into the memory of a device
// other than `device` (peer access is not modelled); device memory of `device` and host pointers
// pass (a kernel dereferencing a host pointer faults in the arena's SIGSEGV handler instead).
void checkPointerArgument(const char* kernel, size_t index, const void* pointer, int device);

// Runs the whole grid before returning, on the device of `stream`, with only that device's memory
// open. Returns cudaErrorInvalidResourceHandle for a stream of another device than the current
// one, cudaErrorInvalidConfiguration / cudaErrorInvalidValue for a launch CUDA would reject (each
// also recorded as the thread's last error); throws KernelFault when the kernel misbehaves or
// takes another device's memory as an argument.
cudaError_t launchGrid(const LaunchSpec& spec);

// Warp-synchronous operations, matched across the lanes named in a mask.
enum class WarpOp : uint8_t {
  ShflIdx, ShflUp, ShflDown, ShflXor,
  Ballot, Any, All,
  SyncWarp,
  MatchAny, MatchAll,
  ReduceAddU, ReduceMinU, ReduceMaxU, ReduceMinI, ReduceMaxI, ReduceAnd, ReduceOr, ReduceXor,
};

struct WarpResult {
  uint64_t value;  // shfl: the source lane's bits; ballot/match: a lane mask; reduce: the result
  int pred;        // __match_all_sync's predicate
};

// The calling thread posts (value, arg, width) and blocks until every lane of `mask` has posted the
// same operation at the same site (any site for SyncWarp). shfl from a lane outside the mask
// (undefined in PTX) returns all-ones bits, so such a read shows up as NaN or -1.
WarpResult warpCollective(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const Site& site);

enum class BarrierOp : uint8_t { Sync, Count, And, Or };

// __syncthreads and its counting forms; exited threads count as arrived.
int syncThreads(BarrierOp op, int predicate, const Site& site);

// cp.async, per thread (cuda/tensor_core.h's cpAsync16*, cpAsyncCommit, cpAsyncWait). Issue fills
// dst[0, copyBytes) with 0xFF bytes at once and records the copy in the thread's open group; it
// lands — srcBytes read from src, the rest of copyBytes zero-filled — only when a wait completes
// its group, so a read before the wait sees the poison. Commit closes the open group (it may be
// empty); wait(n) completes every group except the n most recently committed (open copies stay
// pending). Copies still pending when the thread exits are dropped. Addresses must be aligned to
// copyBytes (4, 8 or 16) and srcBytes ≤ copyBytes, else KernelFault.
void asyncCopyIssue(void* dst, const void* src, unsigned copyBytes, unsigned srcBytes, const Site& site);
void asyncCopyCommit(const Site& site);
void asyncCopyWait(int pendingGroups, const Site& site);

// wgmma (cuda/wgmma.h), per thread of a warpgroup: 4 consecutive warps, threads 128w..128w+127 of
// the block, which must all exist. The model:
// - wgmmaIssue records `multiply` in the thread's open group; it runs when a wait completes that
//   group, reading shared memory then (a kernel that overwrites an operand before the wait computes
//   with the new bytes, and its test fails). The accumulators `d[0, count)` read as 0xFF bytes (NaN)
//   from the first issue to the wait that completes the last op on them; ops on the same registers
//   chain in issue order on a saved copy, and `multiply` receives that copy.
// - Faults (KernelFault): an issue without wgmmaFence since the thread started or last waited; an
//   issue while some thread of the block has cp.async copies that landed after its last
//   fenceProxyAsync (shared memory written through the generic proxy, read by the async one); the
//   threads of a warpgroup issuing different sequences (the n-th issue of every thread must have the
//   same site and `signature`: shape and descriptors); a thread exiting with ops pending; an
//   incomplete warpgroup.
// - wgmmaWait(n) completes every group except the n most recently committed.
struct WgmmaOp {
  float* d;                                 // the thread's accumulator registers
  unsigned count;                           // how many
  uint64_t signature;                       // equal across the warpgroup
  std::function<void(float* d)> multiply;   // d = (scale-d ? d : 0) + A·B for this thread's elements
};
void wgmmaFence(const Site& site);
void wgmmaIssue(WgmmaOp op, const Site& site);
void wgmmaCommit(const Site& site);
void wgmmaWait(int pendingGroups, const Site& site);
void fenceProxyAsync(const Site& site);

// The byte offset of `p` in the block's dynamic shared memory (the emulator's shared address
// space); KernelFault when `p` is not inside it.
uint32_t sharedOffset(const void* p, const Site& site);

// Lanes of the calling thread's warp that have not exited.
unsigned activeMask();

// Lets the other threads of the block run (__nanosleep; spin-waits must call it to make progress).
void yieldThread();

// The block's dynamic shared memory: 128-byte aligned, refilled with 0xFF bytes for every block so
// that reading it before writing shows up (NaN for floats).
void* dynamicSharedBase();

// The compute capability the emulated device reports: MOEKIT_EMU_SM (default 89, read once per
// process), unless setComputeCapability(cc) set one (80, 86, 89 or 90; 0 returns to the variable).
void setComputeCapability(int cc);

// Scheduling seed: MOEKIT_EMU_SEED, or setSeed(); every block derives its order from it.
uint64_t seed();
void setSeed(uint64_t seed);

// Ends the process with a message naming the misuse (a built-in called outside any kernel).
[[noreturn]] void misuse(const char* what, const Site& site);

}  // namespace moekit::emu
