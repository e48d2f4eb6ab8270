// Device memory of the SIMT emulator (see device_memory.h): the arena, its allocator, the access
// scopes that open it to kernels and copies, and the SIGSEGV handler that names host dereferences.
#include "device_memory.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "block.h"
#include "fiber.h"

namespace moekit::emu {
namespace {

constexpr size_t kAlign = 256;
// The unit of every protection change: the accessible prefix grows by it, the base is aligned to
// it, and an allocation's poison window is widened to it. It is the transparent huge page size, so
// the arena (advised MADV_HUGEPAGE) is toggled one page-table entry per 2 MiB rather than per 4 KiB
// page: the open/close around each launch costs ~0.1 ms per GiB in use instead of ~40 ms.
constexpr size_t kChunk = size_t(2) << 20;

struct Arena {
  char* base = nullptr;
  size_t capacity = 0;
  size_t top = 0;        // bump pointer (offset)
  size_t committed = 0;  // [base, base + committed) is the part access scopes toggle
  size_t inUse = 0;
  int openScopes = 0;
  bool guard = true;
  struct Allocation {
    size_t bytes;    // as requested: the bound copies are checked against
    size_t rounded;  // as reserved: the free list it returns to
  };
  std::map<uintptr_t, Allocation> live;
  std::map<size_t, std::vector<char*>> freeLists;   // rounded size → free blocks
};

std::mutex arenaMutex;
Arena* arena = nullptr;  // created on first use, never destroyed
struct sigaction previousSegv;

size_t roundUp(size_t bytes) {
  size_t size = kAlign;
  while (size < bytes) size <<= 1;
  return size;
}

void writeStderr(const char* text) {
  const ssize_t ignored = write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

void onSegv(int sig, siginfo_t* info, void* context) {
  const char* addr = static_cast<const char*>(info->si_addr);
  char message[512];
  if (arena && addr >= arena->base && addr < arena->base + arena->capacity) {
    std::snprintf(message, sizeof message,
                  "moekit emulator: host code dereferenced device memory at %p; device pointers are only "
                  "valid inside kernels and in cudaMemcpy/cudaMemset (set MOEKIT_EMU_GUARD=0 to disable "
                  "this check)\n",
                  info->si_addr);
    writeStderr(message);
    std::abort();
  }
  if (isStackGuard(addr)) {
    const char* kernel = currentKernelName();
    std::snprintf(message, sizeof message,
                  "moekit emulator: a thread of kernel %s overflowed its %zu KiB fiber stack (raise "
                  "MOEKIT_EMU_STACK_KIB)\n",
                  kernel ? kernel : "?", StackPool::stackBytes() / 1024);
    writeStderr(message);
    std::abort();
  }
  // Not ours: hand over to whoever handled SIGSEGV before us.
  if (previousSegv.sa_flags & SA_SIGINFO) {
    previousSegv.sa_sigaction(sig, info, context);
  } else if (previousSegv.sa_handler != SIG_DFL && previousSegv.sa_handler != SIG_IGN) {
    previousSegv.sa_handler(sig);
  } else {
    signal(SIGSEGV, SIG_DFL);  // returning re-executes the access, which now kills the process
  }
}

void setAccess(Arena& a, size_t from, size_t to, bool open) {
  if (to > from) mprotect(a.base + from, to - from, open ? PROT_READ | PROT_WRITE : PROT_NONE);
}

Arena& getArena() {
  if (arena) return *arena;
  auto* a = new Arena;
  const char* env = std::getenv("MOEKIT_EMU_GUARD");
  a->guard = !(env && std::strcmp(env, "0") == 0);
  for (size_t capacity = size_t(16) << 30; capacity >= (size_t(256) << 20); capacity /= 2) {
    void* mem = mmap(nullptr, capacity + kChunk, a->guard ? PROT_NONE : PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem != MAP_FAILED) {
      const uintptr_t aligned = (reinterpret_cast<uintptr_t>(mem) + kChunk - 1) / kChunk * kChunk;
      a->base = reinterpret_cast<char*>(aligned);
      a->capacity = capacity;
      madvise(a->base, capacity, MADV_HUGEPAGE);  // a hint: without huge pages only speed differs
      break;
    }
  }
  struct sigaction action {};
  action.sa_sigaction = &onSegv;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  sigaction(SIGSEGV, &action, &previousSegv);
  arena = a;
  return *a;
}

// The live allocation containing p, or live.end().
std::map<uintptr_t, Arena::Allocation>::const_iterator findAllocation(const Arena& a, const void* p) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  auto it = a.live.upper_bound(addr);
  if (it == a.live.begin()) return a.live.end();
  --it;
  return addr < it->first + std::max<size_t>(it->second.bytes, 1) ? it : a.live.end();
}

}  // namespace

void* deviceAlloc(size_t bytes) {
  std::lock_guard<std::mutex> lock(arenaMutex);
  Arena& a = getArena();
  if (!a.base) return nullptr;
  const size_t size = roundUp(bytes == 0 ? 1 : bytes);
  char* p = nullptr;
  auto& list = a.freeLists[size];
  if (!list.empty()) {
    p = list.back();
    list.pop_back();
  } else {
    if (size > a.capacity - a.top) return nullptr;
    p = a.base + a.top;
    a.top += size;
    if (a.top > a.committed) {
      const size_t grown = std::min(a.capacity, (a.top + kChunk - 1) / kChunk * kChunk);
      if (a.guard && a.openScopes > 0) setAccess(a, a.committed, grown, true);
      a.committed = grown;
    }
  }
  a.live[reinterpret_cast<uintptr_t>(p)] = Arena::Allocation{bytes, size};
  a.inUse += size;
  // Poison through a chunk-aligned window when no access scope has the arena open.
  const size_t from = size_t(p - a.base) / kChunk * kChunk;
  const size_t to = (size_t(p - a.base) + size + kChunk - 1) / kChunk * kChunk;
  if (a.guard && a.openScopes == 0) setAccess(a, from, to, true);
  std::memset(p, 0xff, size);
  if (a.guard && a.openScopes == 0) setAccess(a, from, to, false);
  return p;
}

bool deviceFree(void* p) {
  std::lock_guard<std::mutex> lock(arenaMutex);
  if (!arena) return false;
  auto it = arena->live.find(reinterpret_cast<uintptr_t>(p));
  if (it == arena->live.end()) return false;
  arena->freeLists[it->second.rounded].push_back(static_cast<char*>(p));
  arena->inUse -= it->second.rounded;
  arena->live.erase(it);
  return true;
}

bool isDevicePointer(const void* p) {
  const Arena* a = arena;
  const char* c = static_cast<const char*>(p);
  return a && a->base && c >= a->base && c < a->base + a->capacity;
}

bool deviceRangeValid(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(arenaMutex);
  if (!arena) return false;
  auto it = findAllocation(*arena, p);
  if (it == arena->live.end()) return false;
  return reinterpret_cast<uintptr_t>(p) + bytes <= it->first + it->second.bytes;
}

size_t deviceBytesInUse() {
  std::lock_guard<std::mutex> lock(arenaMutex);
  return arena ? arena->inUse : 0;
}

size_t deviceCapacity() {
  std::lock_guard<std::mutex> lock(arenaMutex);
  return getArena().capacity;
}

DeviceAccess::DeviceAccess() {
  std::lock_guard<std::mutex> lock(arenaMutex);
  Arena& a = getArena();
  if (a.openScopes++ == 0 && a.guard) setAccess(a, 0, a.committed, true);
}

DeviceAccess::~DeviceAccess() {
  std::lock_guard<std::mutex> lock(arenaMutex);
  Arena& a = *arena;
  if (--a.openScopes == 0 && a.guard) setAccess(a, 0, a.committed, false);
}

}  // namespace moekit::emu
