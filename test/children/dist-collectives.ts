/**
 * Every collective of dist.init({backend: 'mpi'}) for every dtype it takes, run by
 * test/dist.test.ts under `mpirun -np N` (or alone: a process started without mpirun is one rank).
 * Each rank computes what every rank sent (the inputs are functions of the rank), compares the
 * results exactly and prints one line "DIST-REPORT {rank, size, checks, failures}".
 *
 * Exactness: the f32 inputs are small dyadic numbers and the i32 inputs small integers, so sums
 * and maxima are exact in any order; avg is one f32 division of that exact sum by size, which
 * Math.fround(sum / size) reproduces (f64 then f32 rounding of a quotient of f32 values is the f32
 * rounding, since 53 ≥ 2·24 + 2).
 */
import { ArgumentError, DType, DTypeError, DisposedError, ShapeError, Tensor, dist } from '../../lib';

// generous: the ranks of a loaded machine may start seconds apart, and dist.init waits for all
const comm = dist.init({ backend: 'mpi', timeoutMs: 120_000 });
const { rank, size } = comm;
const failures: string[] = [];
let checks = 0;

function check(ok: boolean, what: string): void {
  checks++;
  if (!ok) failures.push(what);
}

function sameArray(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  return a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));
}

function throwsClass(call: () => unknown, errorClass: new (...args: never[]) => Error): string {
  try {
    call();
  } catch (error) {
    return error instanceof errorClass ? 'ok' : `${(error as Error).name}: ${(error as Error).message}`;
  }
  return 'no error';
}

const ALL_DTYPES: DType[] = ['f32', 'bf16', 'f16', 'i32', 'u8', 'e4m3', 'e5m2'];

/** A tensor whose raw element i is code(i) (an integer in [0, 200)), in the typed array of its dtype. */
function tensorOf(dtype: DType, shape: number[], code: (i: number) => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const codes = Array.from({ length: n }, (_, i) => code(i));
  switch (dtype) {
    case 'f32': return Tensor.from(Float32Array.from(codes), shape);
    case 'i32': return Tensor.from(Int32Array.from(codes.map((c) => c - 50)), shape);
    case 'bf16':
    case 'f16': return Tensor.from(Uint16Array.from(codes.map((c) => 0x3c00 + c)), shape, { dtype });
    default: return Tensor.from(Uint8Array.from(codes), shape, { dtype });
  }
}

/** The raw values tensorOf stores for code(i). */
function rawOf(dtype: DType, codes: number[]): number[] {
  if (dtype === 'i32') return codes.map((c) => c - 50);
  if (dtype === 'bf16' || dtype === 'f16') return codes.map((c) => 0x3c00 + c);
  return codes;
}

// ---- reductions (f32, i32) -------------------------------------------------------------------------
const f32Value = (r: number, i: number): number => ((r + 1) * ((i % 5) + 1)) * 0.5 - (i % 2) * r;
const i32Value = (r: number, i: number): number => (r + 1) * (i + 1) - 3 * (i % 2) * r;

function expected(op: 'sum' | 'avg' | 'max', value: (r: number, i: number) => number, i: number): number {
  const values = Array.from({ length: size }, (_, r) => value(r, i));
  const sum = values.reduce((a, b) => a + b, 0);
  return op === 'max' ? Math.max(...values) : op === 'avg' ? Math.fround(sum / size) : sum;
}

for (const [dtype, value] of [['f32', f32Value], ['i32', i32Value]] as const) {
  const n = 23;
  const data = Array.from({ length: n }, (_, i) => value(rank, i));
  const input = dtype === 'f32' ? Tensor.from(Float32Array.from(data), [n]) : Tensor.from(Int32Array.from(data), [n]);
  for (const op of ['sum', 'avg', 'max'] as const) {
    if (op === 'avg' && dtype === 'i32') continue;
    const out = comm.allReduce(input, op);
    check(out !== input && out.dtype === dtype && sameArray(out.shape, [n]), `allReduce ${dtype} ${op}: a new ${dtype} tensor of shape [${n}]`);
    const want = Array.from({ length: n }, (_, i) => expected(op, value, i));
    check(sameArray(out.toArray(), want), `allReduce ${dtype} ${op}: ${Array.from(out.toArray())} != ${want}`);
    check(sameArray(input.toArray(), data), `allReduce ${dtype} ${op} leaves its input unchanged`);

    // reduceScatter: [size·2, 3] → block `rank` of [2, 3]
    const rows = size * 2;
    const scatterData = Array.from({ length: rows * 3 }, (_, i) => value(rank, i));
    const scatterIn = dtype === 'f32' ? Tensor.from(Float32Array.from(scatterData), [rows, 3]) : Tensor.from(Int32Array.from(scatterData), [rows, 3]);
    const scattered = comm.reduceScatter(scatterIn, op);
    const block = Array.from({ length: 6 }, (_, i) => expected(op, value, rank * 6 + i));
    check(sameArray(scattered.shape, [2, 3]) && sameArray(scattered.toArray(), block), `reduceScatter ${dtype} ${op}: ${Array.from(scattered.toArray())} != ${block}`);
  }
}

// ---- data movement (every dtype) -------------------------------------------------------------------
for (const dtype of ALL_DTYPES) {
  // allGather: [2, 3] per rank → [2·size, 3], rank order
  const gathered = comm.allGather(tensorOf(dtype, [2, 3], (i) => (rank * 17 + i) % 200));
  const wantGather = rawOf(dtype, Array.from({ length: size * 6 }, (_, j) => (Math.floor(j / 6) * 17 + (j % 6)) % 200));
  check(sameArray(gathered.shape, [size * 2, 3]) && gathered.dtype === dtype, `allGather ${dtype}: shape ${gathered.shape}`);
  check(sameArray(gathered.view(), wantGather), `allGather ${dtype}: ${Array.from(gathered.view())} != ${wantGather}`);
  const scalar = comm.allGather(tensorOf(dtype, [], () => rank + 1));
  check(sameArray(scalar.shape, [size]) && sameArray(scalar.view(), rawOf(dtype, Array.from({ length: size }, (_, r) => r + 1))), `allGather ${dtype} of a scalar`);

  // broadcast from every root; the others pass different data of the same size
  for (let root = 0; root < size; root++) {
    const mine = tensorOf(dtype, [4], (i) => (rank === root ? root * 13 + i + 1 : 0));
    const out = comm.broadcast(mine, root);
    check(sameArray(out.view(), rawOf(dtype, [1, 2, 3, 4].map((k) => root * 13 + k))), `broadcast ${dtype} from ${root}: ${Array.from(out.view())}`);
  }

  // allToAllV with uneven counts, zeros included: rank r sends (r + 2p) mod 3 rows to rank p;
  // element c of row j from r to p is (37r + 11p + 3j + c) mod 200
  const pattern = (r: number, p: number): number => (r + 2 * p) % 3;
  const sendCounts = Array.from({ length: size }, (_, p) => pattern(rank, p));
  const codes: number[] = [];
  for (let p = 0; p < size; p++) for (let j = 0; j < sendCounts[p]; j++) for (let c = 0; c < 3; c++) codes.push((37 * rank + 11 * p + 3 * j + c) % 200);
  const sendRows = sendCounts.reduce((a, b) => a + b, 0);
  const send = tensorOf(dtype, [sendRows, 3], (i) => codes[i]);
  const { tensor, recvCounts } = comm.allToAllV(send, sendCounts);
  const wantCounts = Array.from({ length: size }, (_, q) => pattern(q, rank));
  const wantCodes: number[] = [];
  for (let q = 0; q < size; q++) for (let j = 0; j < wantCounts[q]; j++) for (let c = 0; c < 3; c++) wantCodes.push((37 * q + 11 * rank + 3 * j + c) % 200);
  check(sameArray(recvCounts, wantCounts), `allToAllV ${dtype} recvCounts ${recvCounts} != ${wantCounts}`);
  check(sameArray(tensor.shape, [wantCounts.reduce((a, b) => a + b, 0), 3]), `allToAllV ${dtype} shape ${tensor.shape}`);
  check(sameArray(tensor.view(), rawOf(dtype, wantCodes)), `allToAllV ${dtype}: ${Array.from(tensor.view())} != ${rawOf(dtype, wantCodes)}`);
}

// allToAllV where only rank 0 sends (5 rows, all to the last rank): empty tensors elsewhere
{
  const last = size - 1;
  const rows = rank === 0 ? 5 : 0;
  const send = Tensor.from(Float32Array.from({ length: rows * 2 }, (_, i) => i + 1), [rows, 2]);
  const sendCounts = Array.from({ length: size }, (_, p) => (p === last ? rows : 0));
  const { tensor, recvCounts } = comm.allToAllV(send, sendCounts);
  const wantRows = rank === last ? 5 : 0;
  check(sameArray(recvCounts, Array.from({ length: size }, (_, q) => (q === 0 && rank === last ? 5 : 0))), `allToAllV one sender: recvCounts ${recvCounts}`);
  check(sameArray(tensor.shape, [wantRows, 2]), `allToAllV one sender: shape ${tensor.shape}`);
  check(sameArray(tensor.toArray(), Array.from({ length: wantRows * 2 }, (_, i) => i + 1)), `allToAllV one sender: values`);
}

// ---- ranks that disagree: the same typed error everywhere, and the communicator stays usable --------
if (size > 1) {
  check(throwsClass(() => comm.allReduce(Tensor.zeros([4 + rank]), 'sum'), ShapeError) === 'ok', 'allReduce of different lengths → ShapeError');
  check(throwsClass(() => comm.allGather(Tensor.zeros([4], { dtype: rank === 0 ? 'f32' : 'i32' })), DTypeError) === 'ok', 'allGather of different dtypes → DTypeError');
  check(throwsClass(() => comm.broadcast(Tensor.zeros([4]), rank % 2), ArgumentError) === 'ok', 'broadcast from different roots → ArgumentError');
  check(throwsClass(() => comm.allReduce(Tensor.zeros([4]), rank === 0 ? 'sum' : 'max'), ArgumentError) === 'ok', 'allReduce with different ops → ArgumentError');
  check(throwsClass(() => comm.allToAllV(Tensor.zeros([size, rank === 0 ? 3 : 4]), Array(size).fill(1)), ShapeError) === 'ok', 'allToAllV of different row sizes → ShapeError');
}
comm.barrier();
check(sameArray(comm.allReduce(Tensor.from([rank], [1], { dtype: 'i32' }), 'sum').toArray(), [(size * (size - 1)) / 2]), 'usable after the disagreements');

comm.close();
check(throwsClass(() => comm.barrier(), DisposedError) === 'ok', 'barrier after close → DisposedError');
check(throwsClass(() => comm.allReduce(Tensor.zeros([1]), 'sum'), DisposedError) === 'ok', 'allReduce after close → DisposedError');

process.stdout.write(`DIST-REPORT ${JSON.stringify({ rank, size, checks, failures })}\n`);
