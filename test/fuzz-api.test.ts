/**
 * API fuzzing (issues #9, #16): test/children/fuzz-api.ts calls every exported function and method
 * and every function of the raw addon with seeded adversarial arguments in a child process —
 * traps that dispose tensors or the layer mid-read, hostile names, SharedArrayBuffer data among
 * them. A call must return or throw a MoekitError subclass, and the semantic targets' assertions
 * must hold (DESIGN §4); the process must end normally (no signal, no sanitizer abort when
 * scripts/sanitize.sh runs this suite against the ASan + UBSan build). The worker mode runs the
 * fuzzer in 3 worker threads at once and ends some of them, or the process, at random points.
 * The cpu-vs-emulated-cuda semantic run is test/fuzz-cross-device.test.ts.
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

  test('the semantic targets ran: state dicts with faults refused and clean ones loaded, non-finite tokens refused, SharedArrayBuffer data kept', () => {
    const perTarget = (run.report as FuzzReport).perTarget;
    expect(perTarget['layer.loadStateDict (semantic)'].ok).toBeGreaterThan(0);  // the 'none' fault: a clean state dict loads
    expect(perTarget['layer.loadStateDict (semantic)'].calls - perTarget['layer.loadStateDict (semantic)'].ok).toBeGreaterThan(100);
    expect(perTarget['forward, a non-finite token (semantic)']).toMatchObject({ ok: 0 });
    expect(perTarget['forward, a non-finite token (semantic)'].calls).toBeGreaterThan(100);
    expect(perTarget['Tensor.from a SharedArrayBuffer (semantic)'].ok).toBe(perTarget['Tensor.from a SharedArrayBuffer (semantic)'].calls);
  });
});

describe('API fuzzing in worker threads', () => {
  test('3 workers fuzz at once, 2 terminated at random points: no signal, the finished worker\'s calls all typed', () => {
    const run = runChild<FuzzReport & { workers: number; terminated: number; exitCodes: number[] }>('fuzz-api', {
      env: { MOEKIT_FUZZ_CALLS: '12000', MOEKIT_FUZZ_WORKERS: '3', MOEKIT_FUZZ_TERMINATE: '2', MOEKIT_FUZZ_SEED: '7' },
    });
    if (run.signal !== null || run.status !== 0 || !run.report) throw new Error(`child ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
    expect(run.report.exitCodes.sort()).toEqual([0, 1, 1]);  // worker.terminate() → 1, the worker that finished → 0
    expect(run.report.calls).toBeGreaterThanOrEqual(12000);
    expect(run.report.offenders).toEqual([]);
  }, 300_000);

  test.each([31, 32, 33])('process.exit(0) while 3 fuzzing workers run (seed %i): exit code 0, no signal', (seed) => {
    const run = runChild('fuzz-api', { env: { MOEKIT_FUZZ_CALLS: '20000', MOEKIT_FUZZ_WORKERS: '3', MOEKIT_FUZZ_EXIT: '1', MOEKIT_FUZZ_SEED: String(seed) } });
    expect([run.signal, run.status]).toEqual([null, 0]);
    expect(run.stderr).not.toMatch(/terminate called|Napi::Error|FATAL ERROR|AddressSanitizer|runtime error/);
  }, 120_000);
});
