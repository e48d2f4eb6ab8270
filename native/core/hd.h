// MOEKIT_HD marks math that is compiled for both the host and the device: the same source runs in
// the CPU backend, in nvcc's device code and in the SIMT emulator.
#pragma once

#if defined(__CUDACC__)
#define MOEKIT_HD __host__ __device__
#else
#define MOEKIT_HD
#endif
