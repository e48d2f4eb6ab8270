/**
 * The FP8 kernels (native/cuda/quantize_fp8.cu: cuda::quantizeFp8Blocks, DESIGN F2;
 * native/cuda/grouped_gemm_fp8.cu: cuda::groupedGemmFp8, the e4m3 mma m16n8k32 GEMM with per-block
 * scale promotion, F3) run on the SIMT emulator, tensor-core wrappers emulated, against
 * cpu/fp8.h and test/fixtures/golden/fp8.safetensors: one jest test per case of the C++ program
 * moekit_cuda_gemm_fp8_test (test/cuda/grouped_gemm_fp8_test.cc), each in its own process
 * (test/helpers/case-program.ts). Built next to the addon whenever the CUDA headers are present
 * (CMakeLists.txt, "CUDA FP8 grouped GEMM and quantisation" section).
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram(
  'CUDA FP8 quantisation and block-scaled grouped GEMM on the SIMT emulator (native/cuda/grouped_gemm_fp8.cu, quantize_fp8.cu)',
  'moekit_cuda_gemm_fp8_test',
);
