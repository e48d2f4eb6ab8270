// The block scheduler of the SIMT emulator: runs the threads of one CUDA block as fibers on the
// calling OS thread and implements __syncthreads and the warp-synchronous intrinsics on them.
//
// Scheduling: a ready list from which a seeded random generator picks the next fiber; a fiber runs
// until it blocks (barrier, warp collective), yields (__nanosleep) or exits, and a thread that
// completes a barrier or collective goes back to the ready list like the others, so the order after
// every synchronisation point is random too. A missing __syncthreads therefore lets some thread
// read shared memory before its producer ran, for most seeds.
//
// cp.async: each thread keeps its pending copies; the destination is poisoned (0xFF bytes) at
// issue and written when a wait_group completes the copy's group (runtime.h).
//
// Detection, each ending the block with a KernelFault message:
// - a warp collective whose mask names a lane that has exited or does not exist (partial warp), or
//   omits the calling lane, or a lane exiting while named in a pending collective's mask;
// - a width that is not a power of two in [1, 32];
// - a cp.async whose addresses are not aligned to its size;
// - __syncthreads reached at two different source lines in one barrier phase;
// - no thread runnable while some have not exited: the lanes a collective waits for are at another
//   collective (divergent _sync call) or at __syncthreads (deadlock). The message lists where each
//   lane of the warp is and which threads wait at __syncthreads.
#pragma once

#include <cstdint>

#include "runtime.h"

namespace moekit::emu {

// Runs block `blockIdx` of the launch on this OS thread; throws KernelFault.
void runBlock(const LaunchSpec& spec, uint3 blockIdx, uint64_t blockSeed);

// The name of the kernel whose block this OS thread is running, or null (for fault handlers).
const char* currentKernelName();

}  // namespace moekit::emu
