/**
 * comm.split under MPI, run by test/dist-split.test.ts as `mpirun -np 4 node -r register.js
 * dist-split.ts`. The world of 4 ranks is split into a 2 × 2 grid — rows split(rank >> 1) =
 * {0, 1}, {2, 3} and columns split(rank & 1) = {0, 2}, {1, 3} — and each rank checks that the
 * collectives inside each part give that part's results, that key reorders the ranks, that a bad
 * color fails alike on every rank and leaves the parent usable, and that a part's abort or close
 * does not touch its parent or sibling. Prints one line "SPLIT-REPORT {rank, size, checks, failures}".
 *
 * Exactness: the inputs are small integers (as f32 and i32), so every sum is exact in any order.
 */
import { ArgumentError, CommError, Communicator, DisposedError, Tensor, dist } from '../../lib';

// generous: the ranks of a loaded machine may start seconds apart, and dist.init waits for all
const world = dist.init({ backend: 'mpi', timeoutMs: 120_000 });
const { rank, size } = world;
const failures: string[] = [];
let checks = 0;

function check(ok: boolean, what: string): void {
  checks++;
  if (!ok) failures.push(what);
}

function same(got: ArrayLike<number>, want: number[], what: string): void {
  const a = Array.from(got);
  check(a.length === want.length && a.every((v, i) => v === want[i]), `${what}: got [${a}], expected [${want}]`);
}

function errorOf(call: () => unknown): unknown {
  try {
    call();
  } catch (error) {
    return error;
  }
  return undefined;
}

function throws(call: () => unknown, errorClass: new (...args: never[]) => Error, message: RegExp, what: string): void {
  const error = errorOf(call);
  check(error instanceof errorClass && message.test((error as Error).message),
    `${what}: expected ${errorClass.name} matching ${message}, got ${error === undefined ? 'no error' : `${(error as Error).name}: ${(error as Error).message}`}`);
}

function values(t: Tensor): number[] {
  return Array.from(t.toArray());
}

/** Members (world ranks) of a part, gathered inside it: in the part's rank order. */
function members(part: Communicator): number[] {
  return values(part.allGather(Tensor.from(Int32Array.from([rank]), [1])));
}

const row = world.split(rank >> 1);
const col = world.split(rank & 1);
check(row.backend === 'mpi' && row.timeoutMs === world.timeoutMs, `row: backend ${row.backend}, timeout ${row.timeoutMs}`);
same([row.rank, row.size, col.rank, col.size], [rank & 1, 2, rank >> 1, 2], 'row and column rank and size');
same(members(row), rank < 2 ? [0, 1] : [2, 3], 'row members');
same(members(col), rank % 2 === 0 ? [0, 2] : [1, 3], 'column members');

// Reductions see only the part: Σ world ranks of the part, and 10·rank + 1 maxed.
same(values(row.allReduce(Tensor.from([rank, 1], [2]), 'sum')), rank < 2 ? [1, 2] : [5, 2], 'row allReduce sum');
same(values(col.allReduce(Tensor.from(Int32Array.from([rank]), [1]), 'sum')), [rank % 2 === 0 ? 2 : 4], 'column allReduce i32');
same(values(col.allReduce(Tensor.from([10 * rank + 1], [1]), 'max')), [rank % 2 === 0 ? 21 : 31], 'column allReduce max');
same(values(row.reduceScatter(Tensor.from([rank, 2 * rank], [2]), 'sum')), [(rank < 2 ? 1 : 5) * ((rank & 1) + 1)], 'row reduceScatter');
same(values(col.broadcast(Tensor.from([rank], [1]), 1)), [rank % 2 === 0 ? 2 : 3], 'column broadcast from its rank 1');
// allToAllV: send one row [rank, r] to each rank r of the column, r + 1 copies of it.
const sendCounts = [1, 2];
const rows: number[] = [];
for (let r = 0; r < 2; r++) for (let c = 0; c < sendCounts[r]; c++) rows.push(rank, r);
const a2a = col.allToAllV(Tensor.from(rows, [rows.length / 2, 2]), sendCounts);
const expected: number[] = [];
for (const from of [rank & 1, (rank & 1) + 2]) for (let c = 0; c < col.rank + 1; c++) expected.push(from, col.rank);
same(a2a.recvCounts, [col.rank + 1, col.rank + 1], 'column allToAllV recvCounts');
same(values(a2a.tensor), expected, 'column allToAllV rows');
row.barrier();

// key orders the new ranks: one part of all four, ranked by key = −rank, is the world reversed.
const reversed = world.split(7, -rank);
same([reversed.rank, reversed.size], [size - 1 - rank, size], 'split(7, −rank): rank and size');
same(members(reversed), [3, 2, 1, 0], 'split(7, −rank): members');
// Equal keys keep the old order; unequal parts: {0, 1, 2} and {3}.
const odd = world.split(rank === 3 ? 1 : 0, 0);
same([odd.rank, odd.size], rank === 3 ? [0, 1] : [rank, 3], 'split into 3 + 1: rank and size');
same(values(odd.allReduce(Tensor.from([rank], [1]), 'sum')), [3], 'split into 3 + 1: sums (0 + 1 + 2, and 3 alone)');
// A part splits again: the row into singletons.
const single = row.split(row.rank);
same([single.rank, single.size], [0, 1], 'a row split into singletons');
same(members(single), [rank], 'a singleton holds itself');

// A color < 0 on one rank: every rank throws the same ArgumentError naming it, and the parent works.
throws(() => world.split(rank === 2 ? -1 : 0), ArgumentError, /split: color: expected an integer ≥ 0 on every rank, got -1 on rank 2/, 'a negative color on rank 2');
same(values(world.allReduce(Tensor.from([1], [1]), 'sum')), [size], 'the world after the refused split');
throws(() => world.split(1.5), ArgumentError, /color must be an integer in \[-2147483648, 2147483647\], got number 1\.5/, 'a fractional color (checked here)');
throws(() => world.split(0, 'k' as never), ArgumentError, /key must be an integer/, 'a string key (checked here)');
throws(() => world.split(2 ** 31), ArgumentError, /color must be an integer in/, 'a color above int32');

// Abort inside a part: the row's peer fails at once with CommError naming rank 0; the column and
// the world are untouched.
if (rank === 0) row.abort('split test abort');
world.barrier();
if (rank === 1) throws(() => row.allReduce(Tensor.from([1], [1]), 'sum'), CommError, /rank 0 aborted the communicator: split test abort/, 'the row peer of an aborted row');
if (rank === 0) throws(() => row.barrier(), CommError, /broken by an earlier failure: aborted on rank 0/, 'the aborted row on rank 0');
same(values(col.allReduce(Tensor.from([1], [1]), 'sum')), [2], 'the column after the row abort');

// close: a part is independent of its parent both ways.
reversed.close();
throws(() => reversed.split(0), DisposedError, /split: the communicator was closed/, 'split of a closed part');
same(values(world.allReduce(Tensor.from([2], [1]), 'sum')), [2 * size], 'the world after closing a part');
for (const part of [row, odd, single]) part.close();
world.close();
same(values(col.allReduce(Tensor.from([rank], [1]), 'sum')), [rank % 2 === 0 ? 2 : 4], 'the column after the world was closed');
col.close();

console.log(`SPLIT-REPORT ${JSON.stringify({ rank, size, checks, failures })}`);
