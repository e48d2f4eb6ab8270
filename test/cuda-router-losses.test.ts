/**
 * The CUDA router losses (L1–L5 with their gradients), the router backward and AdamW
 * (native/cuda/router_losses.cu, router_backward.cu, adamw.cu) run on the SIMT emulator against the
 * CPU router, the CPU losses and cpu::adamwStep: one jest test per case of the C++ program
 * moekit_cuda_losses_test (test/cuda/router_losses_test.cc), each in its own process
 * (test/helpers/case-program.ts). Built next to the addon whenever the CUDA headers are present
 * (CMakeLists.txt, "CUDA router losses and backward" section).
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram('CUDA router losses, backward and AdamW on the SIMT emulator', 'moekit_cuda_losses_test');
