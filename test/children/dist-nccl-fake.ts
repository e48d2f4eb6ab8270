/**
 * The NCCL backend (native/comm/nccl_comm.cc) on the emulated CUDA device, with the one-rank
 * stand-in libnccl of test/comm/fake_nccl.cc (MOEKIT_NCCL_PATH) and the emulated addon
 * (MOEKIT_ADDON_PATH), run by test/dist.test.ts. argv[2]:
 *   collectives  id from dist.ncclUniqueId(), then every collective for every dtype: one rank,
 *                so each result equals its input (host tensors staged through device buffers)
 *   over-mpi     dist.init({backend: 'nccl'}) with the id carried by MPI (a single MPI rank)
 *   failure      the first collective meets FAKE_NCCL_ASYNC_ERROR=1 (set by the test)
 * Prints one JSON line {backend, rank, size, checks, failures, error?, after?}.
 */
import { DType, Tensor, dist } from '../../lib';

const mode = process.argv[2];
const failures: string[] = [];
let checks = 0;

function check(ok: boolean, what: string): void {
  checks++;
  if (!ok) failures.push(what);
}

function errorOf(call: () => unknown): { name: string; message: string } | undefined {
  try {
    call();
  } catch (error) {
    return { name: (error as Error).name, message: (error as Error).message };
  }
  return undefined;
}

function sample(dtype: DType, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const codes = Array.from({ length: n }, (_, i) => (i * 7 + 3) % 120);
  if (dtype === 'f32') return Tensor.from(Float32Array.from(codes), shape);
  if (dtype === 'i32') return Tensor.from(Int32Array.from(codes), shape);
  if (dtype === 'bf16' || dtype === 'f16') return Tensor.from(Uint16Array.from(codes), shape, { dtype });
  return Tensor.from(Uint8Array.from(codes), shape, { dtype });
}

const same = (a: Tensor, b: Tensor): boolean =>
  a.dtype === b.dtype && a.shape.join() === b.shape.join() && Array.from(a.view()).every((v, i) => Object.is(v, b.view()[i]));

let id: Uint8Array | undefined;
if (mode !== 'over-mpi') {
  id = dist.ncclUniqueId();
  check(id.length === 128 && id.every((b) => b === 0x5a), 'ncclUniqueId: the 128 bytes of ncclGetUniqueId');
}
const comm = mode === 'over-mpi' ? dist.init({ backend: 'nccl', timeoutMs: 5000 }) : dist.init({ backend: 'nccl', rank: 0, size: 1, id, timeoutMs: 5000 });
const out: Record<string, unknown> = { backend: comm.backend, rank: comm.rank, size: comm.size };

if (mode === 'failure') {
  out.error = errorOf(() => comm.allReduce(sample('f32', [4]), 'sum'));
  out.after = errorOf(() => comm.barrier());
} else {
  for (const dtype of ['f32', 'bf16', 'f16', 'i32', 'u8', 'e4m3', 'e5m2'] as DType[]) {
    const t = sample(dtype, [3, 5]);
    if (dtype === 'f32' || dtype === 'i32') {
      for (const op of dtype === 'f32' ? (['sum', 'avg', 'max'] as const) : (['sum', 'max'] as const)) {
        check(same(comm.allReduce(t, op), t), `allReduce ${dtype} ${op}`);
      }
      check(same(comm.reduceScatter(t, 'sum'), t), `reduceScatter ${dtype}`);
    }
    check(same(comm.allGather(t), t), `allGather ${dtype}`);
    check(same(comm.broadcast(t, 0), t), `broadcast ${dtype}`);
    const moved = comm.allToAllV(t, [3]);
    check(same(moved.tensor, t) && moved.recvCounts.join() === '3', `allToAllV ${dtype}`);
  }
  const none = comm.allToAllV(Tensor.zeros([0, 2]), [0]);
  check(none.tensor.shape.join() === '0,2' && none.recvCounts.join() === '0', 'allToAllV of no rows');
  comm.barrier();
  comm.close();
  check(errorOf(() => comm.barrier())?.name === 'DisposedError', 'closed → DisposedError');
}
process.stdout.write(`${JSON.stringify({ ...out, checks, failures })}\n`);
