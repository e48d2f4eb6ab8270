/**
 * The bf16 tensor-core backward GEMMs (native/cuda/grouped_gemm_bf16_backward.cu: cuda::groupedGemmBf16NN
 * for the input gradient, cuda::groupedGemmBf16TN for the weight gradient) run on the SIMT emulator,
 * tensor-core wrappers emulated, against a float64 reference: one jest test per case of the C++
 * program moekit_cuda_gemm_bf16_backward_test (test/cuda/grouped_gemm_bf16_backward_test.cc), each in
 * its own process (test/helpers/case-program.ts). Built next to the addon whenever the CUDA headers
 * are present (CMakeLists.txt, "CUDA bf16 grouped GEMM backward" section).
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram(
  'CUDA bf16 grouped GEMM backward (NN, TN) on the SIMT emulator (native/cuda/grouped_gemm_bf16_backward.cu)',
  'moekit_cuda_gemm_bf16_backward_test',
);
