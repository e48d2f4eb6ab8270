// Which GEMMs a cuda::Experts forward runs on (experts.h, "Precision"), for the stage and for the
// addon's out.precision.gemm (lib/native.ts ExpertPrecision). No CUDA header: the addon includes it.
#pragma once

#include "../layer/stage_types.h"

namespace moekit::cuda {

enum class ExpertGemm { F32Simt, TensorCore, TensorCoreWgmma };

// The path `precision` takes on CUDA device `device`: TensorCore for Bf16 compute, except Fp8
// experts on a device below compute capability 8.9 (no fp8 mma: F32Simt) and Fp8 experts where
// groupedGemmFp8 runs its wgmma kernel (fp8GemmKernel: compute capability 9.0 with the sm_90a
// code; TensorCoreWgmma, the backward still on the mma.sync bf16 GEMMs); F32Simt otherwise. Throws
// Error(Device) when the device cannot be queried, Error(Argument) for a bad MOEKIT_FP8_KERNEL.
ExpertGemm expertGemm(Precision precision, int device);

}  // namespace moekit::cuda
