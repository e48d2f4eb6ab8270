// Device memory of the SIMT emulator: host memory tagged as device by where it lives.
//
// Every cudaMalloc allocation comes from one reserved arena of address space (16 GiB, shrunk if
// the system refuses), split into one region per emulated device (emulatedDeviceCount()): an
// allocation lives in the region of the device that was current when it was made. A region is
// PROT_NONE except while a kernel of its device runs (DeviceAccess(device)) or a cudaMemcpy /
// cudaMemset copies (DeviceAccess(), every region) — scopes counted across threads — so host code
// that dereferences a device pointer, and a kernel that reaches another device's memory (no peer
// access is modelled), fault; the SIGSEGV handler recognises the arena and aborts with a message
// naming the device (and likewise for a fiber stack overflow). Allocations are 256-byte aligned
// like cudaMalloc's, filled with 0xFF bytes (reading memory nobody wrote gives NaN), and tracked so
// that copies can be checked against allocation bounds. MOEKIT_EMU_GUARD=0 keeps the arena always
// accessible.
#pragma once

#include <cstddef>

namespace moekit::emu {

void* deviceAlloc(size_t bytes, int device);              // null when the device's region is full
bool deviceFree(void* p);                                 // false when p is not a live allocation
bool isDevicePointer(const void* p);                      // inside the arena
int deviceOf(const void* p);                              // the region's device, or −1 outside the arena
bool deviceRangeValid(const void* p, size_t bytes);       // within one live allocation
size_t deviceBytesInUse(int device);
size_t deviceCapacity();                                  // of one device's region

// While a DeviceAccess exists (on any thread), the memory of its device — of every device for
// DeviceAccess() — is readable and writable.
class DeviceAccess {
 public:
  DeviceAccess();
  explicit DeviceAccess(int device);
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;

 private:
  int device_;  // −1: every device
};

}  // namespace moekit::emu
