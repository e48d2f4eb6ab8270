/**
 * The SIMT emulator's own tests (native/emu, test/emu): one jest test per case of the C++ program
 * moekit_emu_test, each run in its own process (`--run NAME`) so that an abort, a crash or a hang
 * belongs to one case. cmake-js builds the program next to the addon whenever the CUDA headers are
 * present (CMakeLists.txt, "SIMT emulator" section); CI always has them.
 */
import { spawnSync } from 'child_process';
import { existsSync } from 'fs';
import { join } from 'path';

const root = join(__dirname, '..');
const candidates = ['build/Release', 'build/Debug', 'build'].map((dir) => join(root, dir, 'moekit_emu_test'));
const program = candidates.find((path) => existsSync(path));
const caseTimeoutMs = 60_000;

function listCases(path: string): string[] {
  const listed = spawnSync(path, ['--list'], { encoding: 'utf8', timeout: caseTimeoutMs });
  if (listed.status !== 0) throw new Error(`${path} --list exited with ${listed.status}: ${listed.stderr}`);
  return listed.stdout.split('\n').filter((line) => line.length > 0);
}

describe('SIMT emulator (native/emu)', () => {
  if (!program) {
    (process.env.CI ? test : test.skip)('the emulator test program is built (it needs the CUDA headers)', () => {
      throw new Error(`moekit_emu_test not found; looked for ${candidates.join(', ')}`);
    });
    return;
  }
  const cases = listCases(program);

  test('the test program lists its cases', () => {
    expect(cases.length).toBeGreaterThan(0);
  });

  test.each(cases)('%s', (name) => {
    const run = spawnSync(program, ['--run', name], { encoding: 'utf8', timeout: caseTimeoutMs });
    if (run.error) throw run.error;
    if (run.status !== 0 || !run.stdout.split('\n').includes(`PASS ${name}`)) {
      throw new Error(
        `exit ${run.status ?? run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`,
      );
    }
  });
});
