// Fibers for the SIMT emulator: the hand-written x86-64 context switch and the stack pool.
// See fiber.h for the model.
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

// moekit_emu_switch(save = rdi, target = rsi): push the callee-saved registers and the floating
// point control words, publish rsp in *save, adopt target as rsp and pop the same frame from it.
// moekit_emu_fiber_start is where a fresh fiber "returns" to: makeFiber() leaves entry in r12 and
// its argument in r13.
asm(R"(
  .text
  .globl moekit_emu_switch
  .hidden moekit_emu_switch
  .type moekit_emu_switch, @function
moekit_emu_switch:
  .cfi_startproc
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .cfi_endproc
  .size moekit_emu_switch, .-moekit_emu_switch

  .globl moekit_emu_fiber_start
  .hidden moekit_emu_fiber_start
  .type moekit_emu_fiber_start, @function
moekit_emu_fiber_start:
  .cfi_startproc
  .cfi_undefined rip
  movq %r13, %rdi
  callq *%r12
  ud2
  .cfi_endproc
  .size moekit_emu_fiber_start, .-moekit_emu_fiber_start
)");

extern "C" void moekit_emu_fiber_start();

namespace moekit::emu {
namespace {

constexpr size_t kGuardBytes = 4096;

// Every pool mapping, for isStackGuard(); pools live as long as their OS thread.
std::mutex registryMutex;
std::vector<std::pair<char*, size_t>> registry;

size_t readStackBytes() {
  size_t kib = 64;
  if (const char* env = std::getenv("MOEKIT_EMU_STACK_KIB")) kib = std::strtoul(env, nullptr, 10);
  kib = std::clamp<size_t>(kib, 16, 4096);
  return kib * 1024;
}

}  // namespace

FiberSp makeFiber(void* stackTop, void (*entry)(void*), void* arg) {
  // Frame popped by moekit_emu_switch, lowest address first: control words, r15, r14, r13, r12,
  // rbx, rbp, return address. sp is 16-byte aligned so that rsp is aligned at the call in
  // moekit_emu_fiber_start, as the ABI requires.
  auto* sp = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(stackTop) & ~uintptr_t(15)) - 80);
  uint32_t mxcsr = 0;
  uint16_t fpucw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  std::memset(sp, 0, 80);
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  sp[3] = reinterpret_cast<uint64_t>(arg);    // r13
  sp[4] = reinterpret_cast<uint64_t>(entry);  // r12
  sp[7] = reinterpret_cast<uint64_t>(&moekit_emu_fiber_start);
  return sp;
}

size_t StackPool::stackBytes() {
  static const size_t bytes = readStackBytes();
  return bytes;
}

StackPool& StackPool::forThisThread() {
  thread_local StackPool pool;
  return pool;
}

void StackPool::reserve(int count) {
  if (count <= count_) return;
  const size_t slot = stackBytes() + kGuardBytes;
  const size_t total = slot * size_t(count);
  void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  char* base = static_cast<char*>(mem);
  for (int i = 0; i < count; ++i) mprotect(base + slot * size_t(i), kGuardBytes, PROT_NONE);
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    if (base_) {
      registry.erase(std::remove(registry.begin(), registry.end(), std::make_pair(base_, slot * size_t(count_))),
                     registry.end());
    }
    registry.emplace_back(base, total);
  }
  if (base_) munmap(base_, slot * size_t(count_));
  base_ = base;
  count_ = count;
}

void* StackPool::top(int i) { return base_ + (stackBytes() + kGuardBytes) * size_t(i + 1); }

StackPool::~StackPool() {
  if (!base_) return;
  const size_t total = (stackBytes() + kGuardBytes) * size_t(count_);
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    registry.erase(std::remove(registry.begin(), registry.end(), std::make_pair(base_, total)), registry.end());
  }
  munmap(base_, total);
}

bool isStackGuard(const void* addr) {
  // Called from a signal handler: try_lock so a fault while the registry is held cannot deadlock.
  std::unique_lock<std::mutex> lock(registryMutex, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  const size_t slot = StackPool::stackBytes() + kGuardBytes;
  const char* p = static_cast<const char*>(addr);
  for (const auto& [base, bytes] : registry) {
    if (p >= base && p < base + bytes) return size_t(p - base) % slot < kGuardBytes;
  }
  return false;
}

}  // namespace moekit::emu
