// How much host memory a new allocation may take: the bound the addon checks a request against
// before it commits any page (a tensor's storage is zero-filled, so an allocation the machine
// cannot hold would be killed by the kernel's OOM killer, not refused).
#pragma once

#include <cstdint>

namespace moekit::cpu {

// MemAvailable + SwapFree of /proc/meminfo, lowered to what the process's cgroup (v2
// memory.max − memory.current, or v1 limit − usage) still allows; sysconf's free pages where
// /proc/meminfo cannot be read. Read at each call: it changes as the machine runs.
int64_t availableHostMemory();

}  // namespace moekit::cpu
