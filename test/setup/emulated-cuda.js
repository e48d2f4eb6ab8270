// jest setupFiles of the cuda-emulated project (jest.config.js): loads the emulated-CUDA build
// (lib/native.ts reads MOEKIT_EMULATE_CUDA when it first loads the addon).
process.env.MOEKIT_EMULATE_CUDA = '1';
process.env.MOEKIT_EMU_SM = '89';
process.env.MOEKIT_TEST_PROJECT = 'cuda-emulated';
