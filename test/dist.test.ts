/**
 * dist (DESIGN §2): the local backend in this process; the MPI backend in child processes under
 * `mpirun --allow-run-as-root --oversubscribe -np N` (test/children/dist-*.ts and the C++
 * program moekit_comm_test, which covers f64/i64); the NCCL backend's absence (no GPU, no
 * libnccl here) as a clear error. This process never initialises MPI itself, so the mpirun it
 * starts does not inherit a singleton's environment.
 *
 * The MPI suites are skipped, with the reason in the test name, only when mpirun is absent and
 * the CI variable is unset; in CI (which installs Open MPI) a missing mpirun fails.
 */
import { existsSync, mkdtempSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import {
  ArgumentError,
  CommError,
  Communicator,
  DTypeError,
  DType,
  DisposedError,
  ShapeError,
  Tensor,
  buildInfo,
  dist,
} from '../lib';
import { native } from '../lib/native';
import { runChild, tail } from './helpers/child';
import { ErrorCase, expectTypedError } from './helpers/expect-error';
import { MPI_ENV, MpiRun, explain, mpirun as mpirunReporting, mpirunAvailable, nodeChild, runReporting } from './helpers/mpi';

const ROOT = path.join(__dirname, '..');
/** Limit of one child run (and of its jest test): generous, for a loaded machine. */
const RUN_MS = 120_000;
/** Where the loaded addon lives: the test programs and the emulated addon are built next to it. */
const ADDON_DIR = path.dirname(process.env.MOEKIT_ADDON_PATH ?? path.join(ROOT, 'build', 'Release', 'moekit.node'));

function rawValues(t: Tensor): number[] {
  return Array.from(t.view());
}

/** A tensor of `dtype` whose raw element i is i + 1 (bits for bf16/f16/fp8). */
function sample(dtype: DType, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const codes = Array.from({ length: n }, (_, i) => i + 1);
  if (dtype === 'f32') return Tensor.from(Float32Array.from(codes), shape);
  if (dtype === 'i32') return Tensor.from(Int32Array.from(codes), shape);
  if (dtype === 'bf16' || dtype === 'f16') return Tensor.from(Uint16Array.from(codes), shape, { dtype });
  return Tensor.from(Uint8Array.from(codes), shape, { dtype });
}

interface EnvReport {
  init: { value?: number; name?: string; message?: string };
  nccl: { value?: number; name?: string; message: string };
}

const ALL_DTYPES: DType[] = ['f32', 'bf16', 'f16', 'i32', 'u8', 'e4m3', 'e5m2'];

describe('dist.init({backend: "local"}): one rank, collectives are copies', () => {
  const comm = dist.init({ backend: 'local' });
  afterAll(() => comm.close());

  test('is rank 0 of 1', () => {
    expect(comm).toBeInstanceOf(Communicator);
    expect([comm.backend, comm.rank, comm.size]).toEqual(['local', 0, 1]);
  });

  test('allReduce returns a new tensor and leaves its input unchanged (not in place)', () => {
    const t = Tensor.from([1.5, -2, 3], [3]);
    for (const op of ['sum', 'avg', 'max'] as const) {
      const out = comm.allReduce(t, op);
      expect(out).not.toBe(t);
      expect(Array.from(out.toArray())).toEqual([1.5, -2, 3]);
      (out.view() as Float32Array)[0] = 99;
      expect(Array.from(t.toArray())).toEqual([1.5, -2, 3]);
    }
    expect(Array.from(comm.allReduce(Tensor.from([7, -8], [2], { dtype: 'i32' }), 'max').toArray())).toEqual([7, -8]);
  });

  test.each(ALL_DTYPES)('allGather, broadcast and allToAllV copy %s bits; reduceScatter copies f32/i32', (dtype) => {
    const t = sample(dtype, [2, 3]);
    const bits = rawValues(t);
    for (const out of [comm.allGather(t), comm.broadcast(t, 0), comm.allToAllV(t, [2]).tensor]) {
      expect(out.dtype).toBe(dtype);
      expect(out.shape).toEqual([2, 3]);
      expect(rawValues(out)).toEqual(bits);
    }
    expect(comm.allToAllV(t, [2]).recvCounts).toEqual([2]);
    if (dtype === 'f32' || dtype === 'i32') expect(rawValues(comm.reduceScatter(t, 'sum'))).toEqual(bits);
  });

  test('allGather of a scalar has shape [size]; allToAllV of no rows is empty', () => {
    expect(comm.allGather(Tensor.from([4], [])).shape).toEqual([1]);
    const empty = comm.allToAllV(Tensor.zeros([0, 5]), [0]);
    expect(empty.tensor.shape).toEqual([0, 5]);
    expect(empty.recvCounts).toEqual([0]);
  });

  test('barrier returns; close is idempotent and every later call throws DisposedError', () => {
    const c = dist.init({ backend: 'local' });
    c.barrier();
    c.close();
    c.close();
    expect(c.closed).toBe(true);
    const t = Tensor.zeros([2]);
    const calls: Array<() => unknown> = [
      () => c.allReduce(t, 'sum'), () => c.allGather(t), () => c.reduceScatter(t, 'sum'),
      () => c.broadcast(t, 0), () => c.allToAllV(t, [2]), () => c.barrier(),
    ];
    for (const call of calls) expectTypedError(call, DisposedError, /the communicator was closed/);
  });

  test('abort breaks the communicator: later calls throw CommError naming the reason', () => {
    const c = dist.init({ backend: 'local' });
    c.abort('stopping here');
    expectTypedError(() => c.barrier(), CommError, /broken by an earlier failure: aborted on rank 0: stopping here/);
    c.close();
  });
});

describe('buildInfo().commBackends', () => {
  test("lists 'local', and 'nccl' exactly when the CUDA backend is compiled", () => {
    const info = buildInfo();
    expect(info.commBackends[0]).toBe('local');
    expect(info.commBackends.includes('nccl')).toBe(info.cuda);
  });
});

describe('dist: bad arguments throw typed errors naming the argument', () => {
  const comm = dist.init({ backend: 'local' });
  afterAll(() => comm.close());
  const f32 = Tensor.zeros([2, 3]);
  const disposed = Tensor.zeros([2]);
  disposed.dispose();
  const handle = comm.handle;

  const cases: ErrorCase[] = [
    ['init: no options', () => dist.init(undefined as never), ArgumentError, /opts must be an object/],
    ['init: unknown backend', () => dist.init({ backend: 'gloo' as never }), ArgumentError, /opts\.backend must be 'nccl', 'mpi' or 'local', got string "gloo"/],
    ['init: unknown option', () => dist.init({ backend: 'local', ranks: 2 } as never), ArgumentError, /opts\.ranks is not an option/],
    ['init: size 0', () => dist.init({ backend: 'local', size: 0 }), ArgumentError, /opts\.size must be an integer in \[1,/],
    ['init: rank ≥ size', () => dist.init({ backend: 'mpi', rank: 2, size: 2 }), ArgumentError, /opts\.rank must be an integer in \[0, 1\]/],
    ['init: local with 2 ranks', () => dist.init({ backend: 'local', size: 2 }), ArgumentError, /opts\.size: the local backend has one rank/],
    ['init: timeoutMs 0', () => dist.init({ backend: 'local', timeoutMs: 0 }), ArgumentError, /opts\.timeoutMs must be an integer in \[1,/],
    ['init: id of 64 bytes', () => dist.init({ backend: 'nccl', rank: 0, size: 1, id: new Uint8Array(64) }), ShapeError, /opts\.id must hold 128 bytes/],
    ['init: id not bytes', () => dist.init({ backend: 'nccl', rank: 0, size: 1, id: [1, 2] as never }), ArgumentError, /opts\.id must be a Uint8Array/],
    ['init: id with mpi', () => dist.init({ backend: 'mpi', rank: 0, size: 1, id: new Uint8Array(128) }), ArgumentError, /opts\.id is only for backend 'nccl'/],
    ['init: id without rank', () => dist.init({ backend: 'nccl', size: 2, id: new Uint8Array(128) }), ArgumentError, /opts\.rank and opts\.size are needed with opts\.id/],
    ['init: device with local', () => dist.init({ backend: 'local', device: 0 }), ArgumentError, /opts\.device is only for backend 'nccl'/],
    ['t not a tensor', () => comm.allReduce([1, 2] as never, 'sum'), ArgumentError, /t must be a Tensor, got array/],
    ['t disposed', () => comm.allGather(disposed), DisposedError, /t has been disposed/],
    ['allReduce of bf16', () => comm.allReduce(Tensor.zeros([2], { dtype: 'bf16' }), 'sum'), DTypeError, /t must be an f32 or i32 tensor for allReduce, got bf16/],
    ['avg of i32', () => comm.allReduce(Tensor.zeros([2], { dtype: 'i32' }), 'avg'), DTypeError, /t must be an f32 tensor for allReduce with op 'avg', got i32/],
    ['unknown op', () => comm.allReduce(f32, 'min' as never), ArgumentError, /op must be 'sum', 'avg' or 'max', got string "min"/],
    ['reduceScatter of a scalar', () => comm.reduceScatter(Tensor.from([1], []), 'sum'), ShapeError, /t must have at least one dimension for reduceScatter/],
    ['reduceScatter of u8', () => comm.reduceScatter(Tensor.zeros([2], { dtype: 'u8' }), 'max'), DTypeError, /for reduceScatter, got u8/],
    ['broadcast root out of range', () => comm.broadcast(f32, 1), ArgumentError, /root must be an integer in \[0, 0\], got number 1/],
    ['broadcast root fractional', () => comm.broadcast(f32, 0.5), ArgumentError, /root must be an integer/],
    ['allToAllV counts per rank', () => comm.allToAllV(f32, [1, 1]), ShapeError, /sendCounts must have 1 entries, got 2/],
    ['allToAllV counts sum', () => comm.allToAllV(f32, [3]), ShapeError, /sendCounts must sum to t\.shape\[0\] = 2, got 3/],
    ['allToAllV negative count', () => comm.allToAllV(f32, [-1]), ArgumentError, /sendCounts\[0\] must be an integer in \[0,/],
    ['allToAllV of a scalar', () => comm.allToAllV(Tensor.from([1], []), [1]), ShapeError, /t must have at least one dimension for allToAllV/],
    ['abort reason not a string', () => comm.abort(5 as never), ArgumentError, /reason must be a string/],
    // the addon called directly, bypassing the facade: the native checks hold
    ['native: no options', () => new native.NativeCommunicator(undefined as never), ArgumentError, /opts: expected an object/],
    ['native: unknown backend', () => new native.NativeCommunicator({ backend: 'tcp' }), ArgumentError, /opts\.backend: expected 'nccl', 'mpi' or 'local', got string/],
    ['native: fractional rank', () => new native.NativeCommunicator({ backend: 'local', rank: 0.5 }), ArgumentError, /opts\.rank: expected an integer/],
    ['native: id of 3 bytes', () => new native.NativeCommunicator({ backend: 'nccl', id: new Uint8Array(3) }), ShapeError, /opts\.id: expected 128 bytes/],
    ['native: timeout NaN', () => new native.NativeCommunicator({ backend: 'local', timeoutMs: NaN }), ArgumentError, /opts\.timeoutMs: expected an integer/],
    ['native: t not a tensor', () => handle.allReduce({} as never, 'sum'), ArgumentError, /t must be a native tensor/],
    ['native: unknown op', () => handle.allReduce(f32.handle, 'prod'), ArgumentError, /op: expected 'sum', 'avg' or 'max'/],
    ['native: reduce bf16', () => handle.reduceScatter(Tensor.zeros([2], { dtype: 'bf16' }).handle, 'sum'), DTypeError, /t: reduceScatter reduces f32 or i32 tensors, got bf16/],
    ['native: root 3', () => handle.broadcast(f32.handle, 3), ArgumentError, /root: expected a rank in \[0, 0\], got number 3/],
    ['native: counts length', () => handle.allToAllV(f32.handle, [1, 1]), ShapeError, /sendCounts: expected an array of 1 row counts/],
    ['native: counts sum', () => handle.allToAllV(f32.handle, [5]), ShapeError, /sendCounts: expected counts summing to t\.shape\[0\] = 2, got 5/],
    ['native: count not integer', () => handle.allToAllV(f32.handle, [NaN]), ArgumentError, /sendCounts\[0\] must be an integer/],
    ['native: wrong arity', () => (handle.allGather as () => unknown)(), ArgumentError, /allGather\(t\) takes 1 argument, got 0/],
  ];

  test.each(cases)('%s', (_name, call, errorClass, message) => expectTypedError(call, errorClass, message));

  test('opts.timeoutMs sets the deadline', () => {
    const c = dist.init({ backend: 'local', timeoutMs: 99 });
    expect(c.timeoutMs).toBe(99);
    c.close();
  });

  test('MOEKIT_COMM_TIMEOUT_MS is the default deadline and is validated (in a child: native code reads it)', () => {
    const set = runChild<EnvReport>('dist-env', { env: { MOEKIT_COMM_TIMEOUT_MS: '1234' } });
    expect(set.report?.init).toEqual({ value: 1234 });
    const bad = runChild<EnvReport>('dist-env', { env: { MOEKIT_COMM_TIMEOUT_MS: 'soon' } });
    expect(bad.report?.init.name).toBe('ArgumentError');
    expect(bad.report?.init.message).toMatch(/MOEKIT_COMM_TIMEOUT_MS: expected an integer number of milliseconds in \[1, 2147483647\], got "soon"/);
  });
});

describe('dist: NCCL is compiled with the CUDA backend but cannot run here (no GPU, no libnccl)', () => {
  const compiled = buildInfo().commBackends.includes('nccl');
  const missing = compiled ? /libnccl\.so\.2 could not be loaded; tried .*MOEKIT_NCCL_PATH/s : /backend 'nccl' is not in this binary: .*without nvcc/;

  test("dist.init({backend: 'nccl'}) throws CommError naming what is missing", () => {
    expectTypedError(() => dist.init({ backend: 'nccl' }), CommError, missing);
    expectTypedError(() => dist.init({ backend: 'nccl', rank: 0, size: 1, id: new Uint8Array(128) }), CommError, missing);
  });

  test('dist.ncclUniqueId() throws the same CommError', () => {
    expectTypedError(() => dist.ncclUniqueId(), CommError, missing);
  });

  (compiled ? test : test.skip)('MOEKIT_NCCL_PATH (a file or a folder) is tried first and named in the message', () => {
    for (const [setting, tried] of [['/nonexistent/nccl/libnccl.so.2', '/nonexistent/nccl/libnccl.so.2'], [__dirname, `${__dirname}/libnccl.so.2`]]) {
      const run = runChild<EnvReport>('dist-env', { env: { MOEKIT_NCCL_PATH: setting } });
      expect(run.report?.nccl.name).toBe('CommError');
      expect(run.report?.nccl.message.split('\n')[1]).toBe(`  ${tried}: ${tried}: cannot open shared object file: No such file or directory`);
    }
  });
});

interface FakeNcclReport {
  backend: string;
  rank: number;
  size: number;
  checks: number;
  failures: string[];
  error?: { name: string; message: string };
  after?: { name: string; message: string };
}

describe('the NCCL backend on the emulated device, with a one-rank stand-in libnccl (test/comm/fake_nccl.cc)', () => {
  const emulatedAddon = path.join(ADDON_DIR, 'emulated', 'moekit.node');
  const fakeDir = path.join(ADDON_DIR, 'fake-nccl');
  if (!existsSync(emulatedAddon) || !existsSync(path.join(fakeDir, 'libnccl.so.2'))) {
    (process.env.CI ? test : test.skip)('the emulated addon and fake-nccl/libnccl.so.2 are built (they need the CUDA headers)', () => {
      throw new Error(`${emulatedAddon} or ${fakeDir}/libnccl.so.2 not found`);
    });
    return;
  }
  const env = { MOEKIT_ADDON_PATH: emulatedAddon, MOEKIT_NCCL_PATH: fakeDir };

  function run(mode: string, extra: Record<string, string> = {}): FakeNcclReport {
    const child = runChild<FakeNcclReport>('dist-nccl-fake', { env: { ...env, ...MPI_ENV, ...extra }, args: [mode], timeoutMs: RUN_MS });
    if (child.status !== 0 || !child.report) throw new Error(`exit ${child.status}\n${tail(child.stderr)}`);
    return child.report;
  }

  test('every collective for every dtype: host tensors staged through device buffers and back', () => {
    const report = run('collectives');
    expect([report.backend, report.rank, report.size]).toEqual(['nccl', 0, 1]);
    expect(report.failures).toEqual([]);
    expect(report.checks).toBeGreaterThan(30);
  }, RUN_MS);

  (buildInfo().commBackends.includes('mpi') ? test : test.skip)('without opts.id the unique id travels over MPI (one MPI rank)', () => {
    const report = run('over-mpi');
    expect([report.backend, report.rank, report.size, report.failures]).toEqual(['nccl', 0, 1, []]);
  }, RUN_MS);

  test('an asynchronous NCCL error fails the collective with CommError and breaks the communicator', () => {
    const report = run('failure', { FAKE_NCCL_ASYNC_ERROR: '1' });
    expect(report.error?.name).toBe('CommError');
    expect(report.error?.message).toMatch(/allReduce: NCCL reported ncclRemoteError: reported by the one-rank stand-in/);
    expect(report.after?.name).toBe('CommError');
    expect(report.after?.message).toMatch(/broken by an earlier failure/);
  }, RUN_MS);

  test('a libnccl older than 2.10 is refused, naming its version', () => {
    const old = runChild<EnvReport>('dist-env', { env: { ...env, FAKE_NCCL_VERSION: '20800' } });
    expect(old.report?.nccl.name).toBe('CommError');
    expect(old.report?.nccl.message).toMatch(/fake-nccl\/libnccl\.so\.2 reports version code 20800; moekit needs NCCL 2\.10 or newer/);
  });
});

// ---- MPI ---------------------------------------------------------------------------------------------

const launch = <R>(argv: string[]) => runReporting<R>(argv, 'DIST-REPORT', RUN_MS);
const mpirun = <R>(np: number, command: string[]) => mpirunReporting<R>(np, command, 'DIST-REPORT', RUN_MS);

interface CollectivesReport {
  rank: number;
  size: number;
  checks: number;
  failures: string[];
}

interface FailureReport {
  rank: number;
  step: number;
  name: string;
  message: string;
  ms: number;
  after: { name: string; message: string };
}

describe('dist.init({backend: "mpi"}) under mpirun', () => {
  if (!mpirunAvailable()) return;

  test('this binary has the MPI backend (mpirun is installed, so the build should have found MPI)', () => {
    expect(buildInfo().commBackends).toContain('mpi');
  });

  function expectAllPassed(run: MpiRun<CollectivesReport>, np: number): void {
    if (run.status !== 0 || run.reports.length !== np) throw new Error(explain(run));
    expect(run.reports.map((r) => r.rank).sort()).toEqual(Array.from({ length: np }, (_, r) => r));
    for (const report of run.reports) {
      expect(report.size).toBe(np);
      expect(report.failures).toEqual([]);
      expect(report.checks).toBeGreaterThan(70);
    }
  }

  test('a process started without mpirun is a single rank, and every collective works there', () => {
    expectAllPassed(launch<CollectivesReport>(nodeChild('dist-collectives')), 1);
  }, RUN_MS);

  test.each([2, 4])('every collective for every dtype on %i ranks, against values computed per rank', (np) => {
    expectAllPassed(mpirun<CollectivesReport>(np, nodeChild('dist-collectives')), np);
  }, RUN_MS);

  const cppProgram = path.join(ADDON_DIR, 'moekit_comm_test');

  test.each([2, 4])('the C++ communicator on %i ranks: f32, f64, i32, i64 and moved-only types (moekit_comm_test)', (np) => {
    if (!existsSync(cppProgram)) throw new Error(`${cppProgram} is not built (CMake builds it next to the addon when it finds MPI)`);
    const run = mpirun<never>(np, [cppProgram]);
    const lines = run.stdout.split('\n').filter((l) => /^(PASS|FAIL) /.test(l));
    if (run.status !== 0 || lines.some((l) => l.startsWith('FAIL'))) throw new Error(explain(run));
    expect(lines.length).toBeGreaterThanOrEqual(15);
  }, RUN_MS);

  test('a rank that throws mid-step: the others get CommError naming it, well within the timeout', () => {
    const timeoutMs = 20_000;
    const run = mpirun<FailureReport>(3, nodeChild('dist-failure', 'throw', String(timeoutMs)));
    const survivors = run.reports.filter((r) => r.rank !== 1);
    if (survivors.length !== 2) throw new Error(explain(run));
    expect(run.status).not.toBe(0); // rank 1 exited with code 1
    for (const report of survivors) {
      expect(report.step).toBe(3);
      expect(report.name).toBe('CommError');
      expect(report.message).toMatch(/rank 1 aborted the communicator: rank 1 exited with code 1/);
      // The bound: the abort notice arrives before the deadline would have fired.
      expect(report.ms).toBeLessThan(timeoutMs);
      expect(report.after.name).toBe('CommError');
      expect(report.after.message).toMatch(/broken by an earlier failure/);
    }
  }, RUN_MS);

  test('a rank that stalls: the others time out with CommError at the deadline, and the stalled rank fails at once when it resumes', () => {
    const timeoutMs = 1500;
    // slack above the deadline: process scheduling on a loaded machine, not the algorithm
    const slackMs = 5000;
    const marker = path.join(mkdtempSync(path.join(tmpdir(), 'moekit-dist-')), 'rank0-failed');
    const run = mpirun<FailureReport>(2, nodeChild('dist-failure', 'stall', String(timeoutMs), marker));
    if (run.status !== 0 || run.reports.length !== 2) throw new Error(explain(run));
    const [waiting, stalled] = [0, 1].map((rank) => run.reports.find((r) => r.rank === rank) as FailureReport);
    expect(waiting.name).toBe('CommError');
    expect(waiting.message).toMatch(/allReduce: timed out after 1500 ms waiting for the other ranks/);
    expect(waiting.ms).toBeLessThan(timeoutMs + slackMs);
    expect(stalled.name).toBe('CommError');
    expect(stalled.message).toMatch(/rank 0 failed in allReduce: allReduce: timed out after 1500 ms/);
    expect(stalled.ms).toBeLessThan(timeoutMs);
  }, RUN_MS);
});
