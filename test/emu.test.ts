/**
 * The SIMT emulator's own tests (native/emu, test/emu): one jest test per case of the C++ program
 * moekit_emu_test, each run in its own process (test/helpers/case-program.ts). cmake-js builds the
 * program next to the addon whenever the CUDA headers are present (CMakeLists.txt, "SIMT emulator"
 * section); CI always has them.
 */
import { describeCaseProgram } from './helpers/case-program';

describeCaseProgram('SIMT emulator (native/emu)', 'moekit_emu_test');
