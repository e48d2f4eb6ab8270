/**
 * Jest runs the TypeScript tests through ts-jest against the sources in lib/, in three projects:
 *   cpu                 every suite, normal build
 *   cuda-emulated       the backend-parametrised suites (test/helpers/devices.ts) once more with the
 *                       emulated-CUDA build loaded, on its emulated cuda device (compute capability
 *                       8.9: the fp8 GEMMs on mma.sync)
 *   cuda-emulated-sm90  the golden and precision suites on the emulated device at compute
 *                       capability 9.0, where the fp8 forward GEMMs run the wgmma kernel
 * Each emulated project sets MOEKIT_EMU_SM in its setup file and lib/native.ts passes it to the
 * emulated addon for every test file, so the two projects may share a worker process.
 */
const common = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { types: ['node', 'jest'] } }] },
};

/** The suites written against layerDevices(): they run on every device of both projects. */
const perDevice = ['golden-layer', 'layer-gradcheck', 'layer-behaviour', 'training-device', 'checkpoint', 'precision', 'non-finite-input', 'cuda-stats', 'ops-device', 'tensor-device'];

module.exports = {
  projects: [
    { ...common, displayName: 'cpu', testMatch: ['**/*.test.ts'] },
    {
      ...common,
      displayName: 'cuda-emulated',
      testMatch: perDevice.map((name) => `**/${name}.test.ts`),
      setupFiles: ['<rootDir>/test/setup/emulated-cuda.js'],
    },
    {
      ...common,
      displayName: 'cuda-emulated-sm90',
      testMatch: ['golden-layer', 'precision'].map((name) => `**/${name}.test.ts`),
      setupFiles: ['<rootDir>/test/setup/emulated-cuda-sm90.js'],
    },
  ],
};
