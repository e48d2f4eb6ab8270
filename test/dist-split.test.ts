/**
 * comm.split (DESIGN §2 dist, an addition; README "Multi-process"): on the local backend in this
 * process, and on 4 MPI ranks as a 2 × 2 grid in a child under
 * `mpirun --allow-run-as-root --oversubscribe -np 4` (test/children/dist-split.ts).
 *
 * The MPI suite is skipped, with the reason in the test name, only when mpirun is absent and the
 * CI variable is unset; in CI (which installs Open MPI) a missing mpirun fails.
 */
import { ArgumentError, Communicator, DisposedError, Tensor, dist } from '../lib';
import { native } from '../lib/native';
import { ErrorCase, expectTypedError } from './helpers/expect-error';
import { explain, mpirun, mpirunAvailable, nodeChild } from './helpers/mpi';

const RUN_MS = 120_000;

describe('comm.split on the local backend: a new one-rank communicator', () => {
  const comm = dist.init({ backend: 'local', timeoutMs: 1234 });
  afterAll(() => comm.close());

  test('any color gives rank 0 of 1 with the parent backend and timeout; its collectives are copies', () => {
    for (const [color, key] of [[0, undefined], [5, -3], [2 ** 31 - 1, 2 ** 31 - 1]] as const) {
      const part = comm.split(color, key);
      expect(part).toBeInstanceOf(Communicator);
      expect(part).not.toBe(comm);
      expect([part.backend, part.rank, part.size, part.timeoutMs]).toEqual(['local', 0, 1, 1234]);
      expect(Array.from(part.allGather(Tensor.from([4, 5], [2])).toArray())).toEqual([4, 5]);
      part.close();
    }
  });

  test('a part and its parent close independently', () => {
    const parent = dist.init({ backend: 'local' });
    const part = parent.split(0);
    parent.close();
    expect(part.closed).toBe(false);
    expect(Array.from(part.allReduce(Tensor.from([3], [1]), 'sum').toArray())).toEqual([3]);
    const grandchild = part.split(1);
    part.close();
    expect(grandchild.closed).toBe(false);
    grandchild.close();
    expectTypedError(() => part.split(0), DisposedError, /split: the communicator was closed/);
  });

  const cases: ErrorCase[] = [
    ['a negative color (refused natively after the exchange of colors)', () => comm.split(-1), ArgumentError, /split: color: expected an integer ≥ 0 on every rank, got -1 on rank 0/],
    ['a fractional color', () => comm.split(0.5), ArgumentError, /color must be an integer in \[-2147483648, 2147483647\], got number 0\.5/],
    ['a color above int32', () => comm.split(2 ** 31), ArgumentError, /color must be an integer in/],
    ['a string color', () => comm.split('0' as never), ArgumentError, /color must be an integer in .*, got string/],
    ['a key below int32', () => comm.split(0, -(2 ** 31) - 1), ArgumentError, /key must be an integer in/],
    ['the binding: a missing key', () => (comm.handle.split as (c: number) => unknown)(0), ArgumentError, /split\(color, key\) takes 2 arguments, got 1/],
    ['the binding: a non-number key', () => comm.handle.split(0, null as never), ArgumentError, /key: expected an integer in \[-2147483648, 2147483647\], got null/],
  ];
  test.each(cases)('%s', (_name, call, errorClass, message) => expectTypedError(call, errorClass, message));

  test('the communicator stays usable after refused splits', () => {
    expect(() => comm.split(-5)).toThrow(ArgumentError);
    expect(comm.split(0).size).toBe(1);
  });

  test('JavaScript cannot hand the constructor a communicator of its own making', () => {
    expect(() => new native.NativeCommunicator({} as never)).toThrow(ArgumentError);
  });
});

describe('comm.split under mpirun -np 4: a 2 × 2 grid', () => {
  if (!mpirunAvailable()) return;

  test('rows and columns hold the right ranks and reduce, gather, scatter, broadcast and exchange within themselves; key orders; a bad color fails on every rank; abort and close stay in the part', () => {
    const run = mpirun<{ rank: number; size: number; checks: number; failures: string[] }>(4, nodeChild('dist-split'), 'SPLIT-REPORT', RUN_MS);
    const reports = run.reports;
    if (run.status !== 0 || reports.length !== 4) throw new Error(explain(run));
    expect(reports.map((r) => r.rank).sort()).toEqual([0, 1, 2, 3]);
    for (const report of reports) {
      expect(report.failures).toEqual([]);
      // 26 checks on every rank, one more on the two ranks of the aborted row
      expect(report.checks).toBeGreaterThanOrEqual(26);
    }
  }, RUN_MS);
});
