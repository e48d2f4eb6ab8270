// Fibers for the SIMT emulator: the threads of one CUDA block run as fibers on one OS thread.
//
// A fiber is a stack plus a saved stack pointer. switchTo() saves the callee-saved registers of the
// x86-64 System V ABI (rbx, rbp, r12-r15, MXCSR, x87 control word) on the current stack and loads
// the other stack's: no syscall, a few nanoseconds per switch (swapcontext saves the signal mask
// with a syscall and is ~10x slower). Stacks come from a per-OS-thread pool of mmap'ed regions
// with a PROT_NONE guard page below each stack, so an overflow faults instead of corrupting the
// neighbour (the fault handler in device_memory.cc names it).
#pragma once

#include <cstddef>
#include <cstdint>

namespace moekit::emu {

#if !defined(__x86_64__)
#error "the moekit SIMT emulator's context switch is written for x86-64"
#endif

// A fiber's saved stack pointer: where switchTo() left its registers.
using FiberSp = void*;

// Saves the running context into *save and resumes `target`.
extern "C" void moekit_emu_switch(FiberSp* save, FiberSp target);

inline void switchTo(FiberSp* save, FiberSp target) { moekit_emu_switch(save, target); }

// Prepares a stack so that switching to the returned pointer calls entry(arg) on it. entry must
// never return (it ends by switching away for good).
FiberSp makeFiber(void* stackTop, void (*entry)(void*), void* arg);

// The stacks of the calling OS thread: `count` stacks of stackBytes() each, reused by every block
// this thread runs. Returns the top (highest address, 16-byte aligned) of stack i.
class StackPool {
 public:
  static StackPool& forThisThread();
  void* top(int i);
  void reserve(int count);
  static size_t stackBytes();

 private:
  StackPool() = default;
  ~StackPool();
  char* base_ = nullptr;
  int count_ = 0;
};

// True when addr lies in a guard page of some fiber stack (used by the fault handler).
bool isStackGuard(const void* addr);

}  // namespace moekit::emu
