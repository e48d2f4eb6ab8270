/**
 * Runs a C++ case program (the harness of test/emu: `--list` prints one case name per line,
 * `--run NAME` runs one case and prints "PASS NAME" or "FAIL NAME: reason") as a jest suite: one
 * jest test per case, each in its own process, so that an abort, a crash or a hang belongs to one
 * case. cmake-js builds these programs next to the addon whenever the CUDA headers are present
 * (CMakeLists.txt); CI always has them, so there a missing program fails instead of skipping.
 */
import { spawnSync } from 'child_process';
import { existsSync } from 'fs';
import { join } from 'path';

const root = join(__dirname, '..', '..');
const caseTimeoutMs = 60_000;

function listCases(path: string): string[] {
  const listed = spawnSync(path, ['--list'], { encoding: 'utf8', timeout: caseTimeoutMs });
  if (listed.status !== 0) throw new Error(`${path} --list exited with ${listed.status}: ${listed.stderr}`);
  return listed.stdout.split('\n').filter((line) => line.length > 0);
}

/** A describe block named `title` running every case of build/{Release,Debug,}/`program`. */
export function describeCaseProgram(title: string, program: string): void {
  const candidates = ['build/Release', 'build/Debug', 'build'].map((dir) => join(root, dir, program));
  const path = candidates.find((candidate) => existsSync(candidate));

  describe(title, () => {
    if (!path) {
      (process.env.CI ? test : test.skip)(`the test program ${program} is built (it needs the CUDA headers)`, () => {
        throw new Error(`${program} not found; looked for ${candidates.join(', ')}`);
      });
      return;
    }
    const cases = listCases(path);

    test('the test program lists its cases', () => {
      expect(cases.length).toBeGreaterThan(0);
    });

    test.each(cases)('%s', (name) => {
      const run = spawnSync(path, ['--run', name], { encoding: 'utf8', timeout: caseTimeoutMs });
      if (run.error) throw run.error;
      if (run.status !== 0 || !run.stdout.split('\n').includes(`PASS ${name}`)) {
        throw new Error(`exit ${run.status ?? run.signal}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`);
      }
    });
  });
}
