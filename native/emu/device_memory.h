// Device memory of the SIMT emulator: host memory tagged as device by where it lives.
//
// Every cudaMalloc allocation comes from one reserved arena of address space (16 GiB, shrunk if
// the system refuses). The arena is PROT_NONE except while a kernel runs or a cudaMemcpy/cudaMemset
// copies (DeviceAccess scopes, counted across threads), so host code that dereferences a device
// pointer faults; the SIGSEGV handler recognises the arena and aborts with a message saying so
// (and likewise for a fiber stack overflow). Allocations are 256-byte aligned like cudaMalloc's,
// filled with 0xFF bytes (reading memory nobody wrote gives NaN), and tracked so that copies can be
// checked against allocation bounds. Set MOEKIT_EMU_GUARD=0 to keep the arena always accessible.
#pragma once

#include <cstddef>

namespace moekit::emu {

void* deviceAlloc(size_t bytes);                          // null when the arena is exhausted
bool deviceFree(void* p);                                 // false when p is not a live allocation
bool isDevicePointer(const void* p);                      // inside the arena
bool deviceRangeValid(const void* p, size_t bytes);       // within one live allocation
size_t deviceBytesInUse();
size_t deviceCapacity();

// While any DeviceAccess exists (on any thread), device memory is readable and writable.
class DeviceAccess {
 public:
  DeviceAccess();
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;
};

}  // namespace moekit::emu
