/**
 * DESIGN §4 across devices (issue #16): test/children/fuzz-api.ts's semantic targets with the
 * emulated-CUDA build loaded (MOEKIT_EMULATE_CUDA=1). On every input both accept, the cpu and the
 * emulated cuda device give the same error class, or y and dx within 1e-4 relative and the same
 * assignments; a non-finite token is refused on both; a failed loadStateDict writes nothing.
 * Not part of the sanitizer run (scripts/sanitize.sh tests the CPU-only ASan build).
 */
import * as fs from 'fs';
import * as path from 'path';
import { runChild, tail } from './helpers/child';

interface FuzzReport {
  calls: number;
  offenders: { target: string; args: string; error: string; count: number }[];
  perTarget: Record<string, { calls: number; ok: number }>;
}

const EMULATED_BUILD = path.join(__dirname, '..', 'build', 'Release', 'emulated', 'moekit.node');

(fs.existsSync(EMULATED_BUILD) || process.env.CI ? describe : describe.skip)('cpu vs emulated cuda (semantic fuzzing)', () => {
  test('1,200 seeded calls: no offender, and over 50 inputs accepted by both devices were compared', () => {
    const run = runChild<FuzzReport>('fuzz-api', {
      env: { MOEKIT_EMULATE_CUDA: '1', MOEKIT_EMU_SM: '89', MOEKIT_FUZZ_CALLS: '1200', MOEKIT_FUZZ_TARGETS: 'semantic', MOEKIT_FUZZ_SEED: '20261207' },
    });
    if (run.signal !== null || run.status !== 0 || !run.report) throw new Error(`child ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
    const offenders = run.report.offenders.map((o) => `${o.count}× ${o.target}: ${o.error}\n    ${o.args}`).join('\n');
    expect(offenders).toBe('');
    expect(run.report.perTarget['cpu vs cuda forward/backward (semantic)'].ok).toBeGreaterThan(50);
    expect(run.report.perTarget['forward, a non-finite token (semantic)']).toMatchObject({ ok: 0 });
  }, 300_000);
});
