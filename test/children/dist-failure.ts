/**
 * A training loop in which one rank fails mid-step, run by test/dist.test.ts under mpirun.
 * argv[2] is the failure mode; every rank runs allReduce steps with timeoutMs = argv[3]:
 *   throw  rank 1 throws (uncaught) at step 3, so its process exits with code 1: the others'
 *          step-3 allReduce must fail with CommError naming rank 1 (the exit hook's abort notice).
 *   stall  rank 1 stops before step 3 until rank 0 has failed (rank 0 creates the file argv[4]
 *          once it caught its error; at most 30 s): the others time out; rank 1's own step 3
 *          then fails at once (their notices).
 * Each rank that catches the failure prints "DIST-REPORT {rank, step, name, message, ms, after}"
 * with `ms` the duration of the failing call and `after` the error of one more call.
 */
import { existsSync, writeFileSync } from 'fs';
import { Tensor, dist } from '../../lib';

const mode = process.argv[2];
const timeoutMs = Number(process.argv[3]);
const marker = process.argv[4];

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
// The ranks start at different times (a loaded machine can spread them by seconds): a first
// communicator with a generous deadline lines them up, so the short one below is only tested on
// the failure it is meant for.
const startup = dist.init({ backend: 'mpi', timeoutMs: 120_000 });
startup.barrier();
startup.close();
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
    for (let waited = 0; !existsSync(marker) && waited < 30_000; waited += 50) sleep(50);
  }
  const started = performance.now();
  try {
    comm.allReduce(x, 'sum').dispose();
  } catch (error) {
    const ms = performance.now() - started;
    const after = describeError(() => comm.barrier());
    if (mode === 'stall' && comm.rank === 0) writeFileSync(marker, 'failed');
    const report = { rank: comm.rank, step, name: (error as Error).name, message: (error as Error).message, ms, after };
    process.stdout.write(`DIST-REPORT ${JSON.stringify(report)}\n`);
    process.exit(0);
  }
}
process.stdout.write(`DIST-REPORT ${JSON.stringify({ rank: comm.rank, step: 6, name: 'none', message: 'no failure', ms: 0 })}\n`);
