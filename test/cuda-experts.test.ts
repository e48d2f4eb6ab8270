/**
 * The CUDA expert stage (native/cuda: cuda::Experts, its permutation and grouped-GEMM kernels) run
 * on the SIMT emulator against the CPU backend: one jest test per case of the C++ program
 * moekit_cuda_experts_test (test/cuda/experts_test.cc), each in its own process
 * (test/helpers/case-program.ts). Built next to the addon whenever the CUDA headers are present
 * (CMakeLists.txt, "CUDA expert stage" section).
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram('CUDA expert stage on the SIMT emulator (native/cuda)', 'moekit_cuda_experts_test');
