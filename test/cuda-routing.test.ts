/**
 * The CUDA routing kernels (native/cuda/routing.cu: the top-k routing launchers) run on the SIMT emulator
 * against cpu::Router's decisions: one jest test per case of the C++ program
 * moekit_cuda_routing_test (test/cuda/routing_test.cc), each in its own process
 * (test/helpers/case-program.ts). Built next to the addon whenever the CUDA headers are present
 * (CMakeLists.txt, "CUDA routing" section).
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram('CUDA routing on the SIMT emulator (native/cuda/routing.cu)', 'moekit_cuda_routing_test');
