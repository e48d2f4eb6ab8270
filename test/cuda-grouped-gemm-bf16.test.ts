/**
 * The bf16 tensor-core grouped GEMM (native/cuda/grouped_gemm_bf16.cu: cuda::groupedGemmBf16 and its
 * swiglu and combine epilogues) runs on the SIMT emulator, tensor-core wrappers emulated, against a
 * float64 reference: one jest test per case of the C++ program moekit_cuda_gemm_bf16_test
 * (test/cuda/grouped_gemm_bf16_test.cc), each in its own process (test/helpers/case-program.ts).
 * Built next to the addon whenever the CUDA headers are present (CMakeLists.txt, "CUDA bf16
 * grouped GEMM" section).
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram('CUDA bf16 grouped GEMM on the SIMT emulator (native/cuda/grouped_gemm_bf16.cu)', 'moekit_cuda_gemm_bf16_test');
