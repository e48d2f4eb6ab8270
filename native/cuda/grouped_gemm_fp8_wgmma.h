// The sm_90a kernel of groupedGemmFp8 (grouped_gemm_fp8.h is the contract: layout, order of the
// arithmetic, requirements; grouped_gemm_fp8_wgmma.cu: how it runs on wgmma). Called by
// groupedGemmFp8 after its checks when fp8GemmKernel(device) is Fp8GemmKernel::Wgmma.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "grouped_gemm_fp8.h"
#include "padded_groups.h"

namespace moekit::cuda {

// Whether the code CUDA device `device` loaded has the wgmma kernel's
// instructions: true when it runs the sm_90a code (a build whose CUDA architectures include 90a,
// on a compute capability 9.0 device) and on the emulator. The first call per device reads a flag
// of that code back (a synchronous copy); later calls answer from a cache. Throws Error(Device)
// when the query fails.
bool fp8WgmmaLoaded(int device);

// Launches one warpgroup per tile of `tiles` [tileCount] (DEVICE, the 64×64 tiles of the padded
// layout); `groups` is DEVICE memory too. Returns the launch's error.
cudaError_t launchGroupedGemmFp8Wgmma(const uint8_t* a, int lda, const float* aScales, int ldaScales,
                                      const Fp8GemmGroup* groups, const PaddedTile* tiles, int tileCount, float* out,
                                      int ldOut, cudaStream_t stream);

}  // namespace moekit::cuda
