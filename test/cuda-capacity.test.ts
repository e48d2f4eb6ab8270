/**
 * The CUDA router-decision kernels (native/cuda/capacity.cu, expert_choice.cu, router_stats.cu:
 * C1–C5 capacity, R9 expert choice, counts, ExpertStats, R10 load, B1 bias) run on the SIMT
 * emulator against cpu::Router: one jest test per case of the C++ program moekit_cuda_capacity_test
 * (test/cuda/capacity_test.cc), each in its own process (test/helpers/case-program.ts). Built next
 * to the addon whenever the CUDA headers are present (CMakeLists.txt, "CUDA router decisions").
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram('CUDA router decisions on the SIMT emulator (capacity, expert choice, stats)', 'moekit_cuda_capacity_test');
