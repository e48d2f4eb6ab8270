/**
 * Jest runs the TypeScript tests through ts-jest against the sources in lib/, in two projects:
 *   cpu            every suite, normal build
 *   cuda-emulated  the backend-parametrised suites (test/helpers/devices.ts) once more with the
 *                  emulated-CUDA build loaded, on its emulated cuda device
 */
const common = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { types: ['node', 'jest'] } }] },
};

/** The suites written against layerDevices(): they run on every device of both projects. */
const perDevice = ['golden-layer', 'layer-gradcheck', 'layer-behaviour', 'training-device', 'checkpoint', 'precision'];

module.exports = {
  projects: [
    { ...common, displayName: 'cpu', testMatch: ['**/*.test.ts'] },
    {
      ...common,
      displayName: 'cuda-emulated',
      testMatch: perDevice.map((name) => `**/${name}.test.ts`),
      setupFiles: ['<rootDir>/test/setup/emulated-cuda.js'],
    },
  ],
};
