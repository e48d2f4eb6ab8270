/** Jest runs the TypeScript tests through ts-jest against the sources in lib/. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { types: ['node', 'jest'] } }] },
};
