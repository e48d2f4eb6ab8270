#include "host_memory.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

namespace moekit::cpu {

namespace {

// The "<key>: <n> kB" line of /proc/meminfo in bytes, or −1.
int64_t meminfoBytes(const char* key) {
  std::FILE* file = std::fopen("/proc/meminfo", "r");
  if (!file) return -1;
  char line[256];
  int64_t bytes = -1;
  const size_t length = std::strlen(key);
  while (std::fgets(line, sizeof line, file)) {
    long long kib = 0;
    if (std::strncmp(line, key, length) == 0 && line[length] == ':' && std::sscanf(line + length + 1, "%lld", &kib) == 1) {
      bytes = int64_t(kib) * 1024;
      break;
    }
  }
  std::fclose(file);
  return bytes;
}

// The first integer of a one-line file, or −1 (also for cgroup v2's "max").
int64_t fileInteger(const char* path) {
  std::FILE* file = std::fopen(path, "r");
  if (!file) return -1;
  long long value = -1;
  if (std::fscanf(file, "%lld", &value) != 1) value = -1;
  std::fclose(file);
  return value;
}

// What the cgroup limit still allows, or the largest int64 when there is none.
int64_t cgroupHeadroom() {
  int64_t limit = fileInteger("/sys/fs/cgroup/memory.max");
  int64_t usage = fileInteger("/sys/fs/cgroup/memory.current");
  if (limit < 0 || usage < 0) {
    limit = fileInteger("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    usage = fileInteger("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  }
  // cgroup v1 reports "no limit" as a page-rounded near-maximum value.
  if (limit < 0 || usage < 0 || limit >= (int64_t(1) << 62)) return std::numeric_limits<int64_t>::max();
  return std::max<int64_t>(limit - usage, 0);
}

}  // namespace

int64_t availableHostMemory() {
  int64_t available = meminfoBytes("MemAvailable");
  if (available >= 0) {
    available += std::max<int64_t>(meminfoBytes("SwapFree"), 0);
  } else {
    available = int64_t(sysconf(_SC_AVPHYS_PAGES)) * int64_t(sysconf(_SC_PAGESIZE));
  }
  return std::min(available, cgroupHeadroom());
}

}  // namespace moekit::cpu
