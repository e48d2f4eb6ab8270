/**
 * API fuzzing (issue #9): test/children/fuzz-api.ts calls every exported function and method and
 * every function of the raw addon with seeded adversarial arguments in a child process. A call
 * must return or throw a MoekitError subclass; the process must end normally (no signal, no
 * sanitizer abort when scripts/sanitize.sh runs this suite against the ASan + UBSan build).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ChildRun, runChild, tail } from './helpers/child';

interface FuzzReport {
  seed: number;
  calls: number;
  ok: number;
  nativeCalls: number;
  typed: Record<string, number>;
  systemErrors: number;
  receiverRejected: number;
  offenderCount: number;
  offenders: { target: string; args: string; error: string; count: number }[];
  perTarget: Record<string, { calls: number; ok: number }>;
}

const CALLS = 20000;

describe('API fuzzing', () => {
  const traceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-fuzz-trace-'));
  const trace = path.join(traceDir, 'calls.log');
  afterAll(() => fs.rmSync(traceDir, { recursive: true, force: true }));
  let run: ChildRun<FuzzReport>;
  beforeAll(() => {
    run = runChild<FuzzReport>('fuzz-api', { env: { MOEKIT_FUZZ_CALLS: String(CALLS), MOEKIT_FUZZ_TRACE: trace } });
  }, 300_000);
  const lastCall = () => (fs.existsSync(trace) ? tail(fs.readFileSync(trace, 'utf8'), 1) : '(no trace)');

  test(`${CALLS} seeded calls end normally: no signal, exit code 0`, () => {
    if (run.signal !== null || run.status !== 0) {
      throw new Error(`fuzz child ended with signal ${run.signal}, status ${run.status}; last call: ${lastCall()}\n${tail(run.stderr)}`);
    }
    expect(run.report).toBeDefined();
  });

  test('every call returns or throws a typed MoekitError (offenders listed)', () => {
    const report = run.report as FuzzReport;
    const offenders = report.offenders.map((o) => `${o.count}× ${o.target}: ${o.error}\n    ${o.args}`).join('\n');
    expect(offenders).toBe('');
    expect(report.offenderCount).toBe(0);
  });

  test('reaches every target, the raw addon included, and both outcomes', () => {
    const report = run.report as FuzzReport;
    expect(report.calls).toBeGreaterThanOrEqual(10000);
    expect(report.nativeCalls).toBeGreaterThanOrEqual(3000);
    for (const [name, counts] of Object.entries(report.perTarget)) expect([name, counts.calls > 0]).toEqual([name, true]);
    expect(report.ok).toBeGreaterThan(report.calls * 0.2);
    for (const errorClass of ['ShapeError', 'DTypeError', 'ArgumentError', 'DisposedError', 'FormatError', 'MoEConfigError', 'DeviceError']) {
      expect([errorClass, report.typed[errorClass] > 0]).toEqual([errorClass, true]);
    }
  });
});
