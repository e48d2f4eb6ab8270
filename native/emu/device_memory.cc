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
#include "cudart_state.h"
#include "fiber.h"

namespace moekit::emu {
namespace {

constexpr size_t kAlign = 256;
// The unit of every protection change: the accessible prefix grows by it, the base is aligned to
// it, and an allocation's poison window is widened to it. It is the transparent huge page size, so
// the arena (advised MADV_HUGEPAGE) is toggled one page-table entry per 2 MiB rather than per 4 KiB
// page: the open/close around each launch costs ~0.1 ms per GiB in use instead of ~40 ms.
constexpr size_t kChunk = size_t(2) << 20;

// One device's part of the arena: its own bump pointer, free lists and access scopes.
struct Region {
  char* base = nullptr;
  size_t capacity = 0;
  size_t top = 0;        // bump pointer (offset)
  size_t committed = 0;  // [base, base + committed) is the part access scopes toggle
  size_t inUse = 0;
  int openScopes = 0;
  std::map<size_t, std::vector<char*>> freeLists;   // rounded size → free blocks
};

struct Arena {
  char* base = nullptr;
  size_t capacity = 0;  // of all regions
  bool guard = true;
  std::vector<Region> regions;  // one per emulated device, each capacity / devices bytes
  struct Allocation {
    size_t bytes;    // as requested: the bound copies are checked against
    size_t rounded;  // as reserved: the free list it returns to
    int device;
  };
  std::map<uintptr_t, Allocation> live;
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
  char message[640];
  if (arena && addr >= arena->base && addr < arena->base + arena->capacity) {
    const size_t regionBytes = arena->regions.empty() ? arena->capacity : arena->regions[0].capacity;
    const int device = int(size_t(addr - arena->base) / regionBytes);
    const char* kernel = currentKernelName();
    if (kernel) {
      std::snprintf(message, sizeof message,
                    "moekit emulator: kernel %s touched device memory of cuda:%d at %p, which is closed to it: "
                    "a kernel reaches only the memory of the device it runs on (no peer access is modelled)\n",
                    kernel, device, info->si_addr);
    } else {
      std::snprintf(message, sizeof message,
                    "moekit emulator: host code dereferenced device memory of cuda:%d at %p; device pointers are "
                    "only valid inside kernels and in cudaMemcpy/cudaMemset (set MOEKIT_EMU_GUARD=0 to disable "
                    "this check)\n",
                    device, info->si_addr);
    }
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

void setAccess(Region& r, size_t from, size_t to, bool open) {
  if (to > from) mprotect(r.base + from, to - from, open ? PROT_READ | PROT_WRITE : PROT_NONE);
}

Arena& getArena() {
  if (arena) return *arena;
  auto* a = new Arena;
  const char* env = std::getenv("MOEKIT_EMU_GUARD");
  a->guard = !(env && std::strcmp(env, "0") == 0);
  const size_t devices = size_t(emulatedDeviceCount());
  for (size_t capacity = size_t(16) << 30; capacity >= (size_t(256) << 20); capacity /= 2) {
    void* mem = mmap(nullptr, capacity + kChunk, a->guard ? PROT_NONE : PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem != MAP_FAILED) {
      const uintptr_t aligned = (reinterpret_cast<uintptr_t>(mem) + kChunk - 1) / kChunk * kChunk;
      a->base = reinterpret_cast<char*>(aligned);
      a->capacity = capacity / devices / kChunk * kChunk * devices;
      madvise(a->base, capacity, MADV_HUGEPAGE);  // a hint: without huge pages only speed differs
      break;
    }
  }
  a->regions.resize(devices);
  for (size_t d = 0; d < devices && a->base; ++d) {
    a->regions[d].capacity = a->capacity / devices;
    a->regions[d].base = a->base + d * a->regions[d].capacity;
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

void* deviceAlloc(size_t bytes, int device) {
  std::lock_guard<std::mutex> lock(arenaMutex);
  Arena& a = getArena();
  if (!a.base || device < 0 || device >= int(a.regions.size())) return nullptr;
  Region& r = a.regions[size_t(device)];
  const size_t size = roundUp(bytes == 0 ? 1 : bytes);
  char* p = nullptr;
  auto& list = r.freeLists[size];
  if (!list.empty()) {
    p = list.back();
    list.pop_back();
  } else {
    if (size > r.capacity - r.top) return nullptr;
    p = r.base + r.top;
    r.top += size;
    if (r.top > r.committed) {
      const size_t grown = std::min(r.capacity, (r.top + kChunk - 1) / kChunk * kChunk);
      if (a.guard && r.openScopes > 0) setAccess(r, r.committed, grown, true);
      r.committed = grown;
    }
  }
  a.live[reinterpret_cast<uintptr_t>(p)] = Arena::Allocation{bytes, size, device};
  r.inUse += size;
  // Poison through a chunk-aligned window when no access scope has the region open.
  const size_t from = size_t(p - r.base) / kChunk * kChunk;
  const size_t to = (size_t(p - r.base) + size + kChunk - 1) / kChunk * kChunk;
  if (a.guard && r.openScopes == 0) setAccess(r, from, to, true);
  std::memset(p, 0xff, size);
  if (a.guard && r.openScopes == 0) setAccess(r, from, to, false);
  return p;
}

bool deviceFree(void* p) {
  std::lock_guard<std::mutex> lock(arenaMutex);
  if (!arena) return false;
  auto it = arena->live.find(reinterpret_cast<uintptr_t>(p));
  if (it == arena->live.end()) return false;
  Region& r = arena->regions[size_t(it->second.device)];
  r.freeLists[it->second.rounded].push_back(static_cast<char*>(p));
  r.inUse -= it->second.rounded;
  arena->live.erase(it);
  return true;
}

bool isDevicePointer(const void* p) {
  const Arena* a = arena;
  const char* c = static_cast<const char*>(p);
  return a && a->base && c >= a->base && c < a->base + a->capacity;
}

int deviceOf(const void* p) {
  if (!isDevicePointer(p)) return -1;
  const Arena* a = arena;
  return int(size_t(static_cast<const char*>(p) - a->base) / a->regions[0].capacity);
}

bool deviceRangeValid(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(arenaMutex);
  if (!arena) return false;
  auto it = findAllocation(*arena, p);
  if (it == arena->live.end()) return false;
  return reinterpret_cast<uintptr_t>(p) + bytes <= it->first + it->second.bytes;
}

size_t deviceBytesInUse(int device) {
  std::lock_guard<std::mutex> lock(arenaMutex);
  return arena && device >= 0 && device < int(arena->regions.size()) ? arena->regions[size_t(device)].inUse : 0;
}

size_t deviceCapacity() {
  std::lock_guard<std::mutex> lock(arenaMutex);
  Arena& a = getArena();
  return a.regions.empty() ? 0 : a.regions[0].capacity;
}

namespace {

// Opens (or closes) the regions a scope covers when it is the first (or last) scope of each.
void toggle(int device, bool open) {
  std::lock_guard<std::mutex> lock(arenaMutex);
  Arena& a = getArena();
  for (size_t d = 0; d < a.regions.size(); ++d) {
    if (device >= 0 && size_t(device) != d) continue;
    Region& r = a.regions[d];
    const bool edge = open ? r.openScopes++ == 0 : --r.openScopes == 0;
    if (edge && a.guard) setAccess(r, 0, r.committed, open);
  }
}

}  // namespace

DeviceAccess::DeviceAccess() : device_(-1) { toggle(device_, true); }

DeviceAccess::DeviceAccess(int device) : device_(device) { toggle(device_, true); }

DeviceAccess::~DeviceAccess() { toggle(device_, false); }

}  // namespace moekit::emu
