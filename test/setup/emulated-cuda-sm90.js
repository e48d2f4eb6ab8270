// jest setupFiles of the cuda-emulated-sm90 project (jest.config.js): the emulated-CUDA build with
// its device reporting compute capability 9.0 (lib/native.ts passes MOEKIT_EMU_SM to the emulated
// addon), so the fp8 expert GEMMs run the wgmma kernel.
process.env.MOEKIT_EMULATE_CUDA = '1';
process.env.MOEKIT_EMU_SM = '90';
process.env.MOEKIT_TEST_PROJECT = 'cuda-emulated-sm90';
