/**
 * A training loop in which one rank fails mid-step, run by test/dist.test.ts under mpirun.
 * argv[2] is the failure mode; every rank runs allReduce steps with timeoutMs = argv[3]:
 *   throw  rank 1 throws (uncaught) at step 3, so its process exits with code 1: the others'
 *          step-3 allReduce must fail with CommError naming rank 1 (the exit hook's abort notice).
 *   stall  rank 1 sleeps for timeoutMs + 2500 ms before step 3: the others time out; rank 1's own
 *          step 3 then fails at once (their notices).
 * Each rank that catches the failure prints "DIST-REPORT {rank, step, name, message, ms, after}"
 * with `ms` the duration of the failing call and `after` the error of one more call.
 */
import { Tensor, dist } from '../../lib';

const mode = process.argv[2];
const timeoutMs = Number(process.argv[3]);
const comm = dist.init({ backend: 'mpi', timeoutMs });
const x = Tensor.from(new Float32Array(64).fill(comm.rank + 1), [64]);

function describeError(call: () => unknown): { name: string; message: string } {
  try {
    call();
  } catch (error) {
    return { name: (error as Error).name, message: (error as Error).message };
  }
  return { name: 'none', message: '' };
}

for (let step = 0; step < 6; step++) {
  if (step === 3 && comm.rank === 1) {
    if (mode === 'throw') throw new Error('rank 1 fails mid-step');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, timeoutMs + 2500);
  }
  const started = performance.now();
  try {
    comm.allReduce(x, 'sum').dispose();
  } catch (error) {
    const ms = performance.now() - started;
    const after = describeError(() => comm.barrier());
    const report = { rank: comm.rank, step, name: (error as Error).name, message: (error as Error).message, ms, after };
    process.stdout.write(`DIST-REPORT ${JSON.stringify(report)}\n`);
    process.exit(0);
  }
}
process.stdout.write(`DIST-REPORT ${JSON.stringify({ rank: comm.rank, step: 6, name: 'none', message: 'no failure', ms: 0 })}\n`);
