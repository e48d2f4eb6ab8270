// CUDA runtime errors → moekit::Error(Device) (DESIGN §4). Host code only; included by the .cu
// files of native/cuda (compiled by nvcc, or by g++ against the SIMT emulator, where
// cuda_runtime.h is the emulated runtime).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "../core/errors.h"
#include "runtime_calls.h"

namespace moekit::cuda {

// Throws Error(Device, "<what> failed: <CUDA's message> (<error name>)") when err is not success.
inline void checkCuda(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return;
  throw Error(ErrorKind::Device, what + " failed: " + cudaGetErrorString(err) + " (" +
                                     cudaGetErrorName(err) + ")");
}

// A kernel launch's error (moekit::launch returns it) → Error(Device, "launch of <kernel> failed: …").
inline void checkLaunch(cudaError_t err, const char* kernel) {
  checkCuda(err, std::string("launch of ") + kernel);
}

}  // namespace moekit::cuda
