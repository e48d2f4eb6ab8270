/**
 * The FP8 encoder and decoder of native/core/minifloat.h (DESIGN F1) against cuda_fp8.h's host
 * conversions, a second oracle beside the golden fp8.safetensors (EMULATOR.md "FP8 facts"): one
 * jest test per case of the C++ program moekit_fp8_oracle_test (test/cuda/fp8_oracle_test.cc:
 * ≥ 2²⁰ random f32 values per format, every code decoded), each in its own process
 * (test/helpers/case-program.ts). Built next to the addon whenever the CUDA headers are present
 * (CMakeLists.txt, "FP8 (CPU reference, cuda_fp8.h oracle)" section); CI always has them.
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram('FP8 codecs against cuda_fp8.h host conversions (core/minifloat.h)', 'moekit_fp8_oracle_test');
