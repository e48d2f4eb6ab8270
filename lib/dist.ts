/**
 * dist (DESIGN §2): communicators for multi-process training, over native/comm.
 *
 *   dist.init({backend: 'local'})   one rank, no peers: every collective is a copy
 *   dist.init({backend: 'mpi'})     every process of the MPI job (mpirun -np N …; a process
 *                                   started without mpirun is a single rank).
 *   dist.init({backend: 'nccl'})    GPU collectives through libnccl.so.2 (loaded at run time). The
 *                                   unique id travels over MPI, or pass {rank, size, id} with an id
 *                                   from dist.ncclUniqueId() that you shared yourself.
 *
 * init() is synchronous and collective for mpi and nccl: every rank calls it.
 *
 * Collectives return NEW tensors on their input's device and never modify their input (allReduce
 * included). They run on host memory: a cuda tensor is staged through the host (copied down, the
 * collective run, the result copied up to a new tensor on its device). Every rank
 * calls the same collectives in the same order with tensors of the same element count and dtype
 * (allToAllV: the same elements per row), the same op and the same root; a disagreement throws the
 * same ShapeError / DTypeError / ArgumentError on every rank and leaves the communicator usable.
 *   allReduce(t, op)        op over ranks, element-wise; f32 or i32 (avg: f32, computed as sum/size)
 *   allGather(t)            every rank's t concatenated along dimension 0, in rank order
 *                           (a scalar gives [size]); any dtype
 *   reduceScatter(t, op)    t's dimension 0 split into `size` equal blocks; rank r gets block r of
 *                           the op over ranks; f32 or i32
 *   broadcast(t, root)      root's t on every rank; any dtype
 *   allToAllV(t, sendCounts)  rows of t (dimension 0), sendCounts[r] of them to rank r in rank
 *                           order → {tensor: the rows received, grouped by source rank in rank
 *                           order, recvCounts: rows from each rank}; any dtype
 *
 * comm.split(color, key = rank) is collective too: every rank calls it, and the ranks passing the
 * same color (an integer ≥ 0) get a new Communicator of the same backend and timeout, ranked by
 * (key, rank here) — e.g. a data × expert grid of 4 ranks: split(rank >> 1) gives the expert
 * groups {0, 1} and {2, 3}, split(rank & 1) the data groups {0, 2} and {1, 3}. A color < 0 on
 * any rank throws ArgumentError on every rank. local: a new one-rank communicator; mpi:
 * MPI_Comm_split; nccl: ncclCommSplit (NCCL 2.18+, else CommError). The new communicator is
 * independent of its parent: close each one.
 *
 * Failure (mpi, nccl). Each collective waits at most `timeoutMs` (opts.timeoutMs, else
 * MOEKIT_COMM_TIMEOUT_MS, else 600000 ms). A rank whose collective fails — timed out, backend
 * error, or a peer's abort notice — throws CommError, and the communicator is broken: every later
 * call throws CommError naming the first failure. The failing rank tells its peers (mpi: an abort
 * notice, so they fail at once; nccl: ncclCommAbort, and the peers fail when NCCL reports it or at
 * their deadline). comm.abort(reason) breaks it on purpose. A process that exits with a non-zero
 * code (an uncaught exception, for one) while a communicator is open aborts it on the way out, so
 * its peers get a CommError naming it instead of waiting. Argument errors leave the communicator
 * usable; after close() every call throws DisposedError. MPI is finalised at process exit, which
 * waits for every rank to exit.
 */
import { DType } from './dtype';
import { ArgumentError, DTypeError, DisposedError, ShapeError } from './errors';
import { NativeCommunicator, native } from './native';
import { Tensor } from './tensor';
import { checkInteger, checkKeys, checkObject, checkSizes, describe } from './validate';

export type CommBackend = 'nccl' | 'mpi' | 'local';
export type ReduceOp = 'sum' | 'avg' | 'max';

export interface DistInitOptions {
  backend: CommBackend;
  /** This process's rank. Needed with `id`; otherwise checked against what the backend finds. */
  rank?: number;
  /** The number of ranks. Needed with `id`; otherwise checked against what the backend finds. */
  size?: number;
  /** nccl: the 128 bytes of dist.ncclUniqueId() from one rank, the same on every rank. */
  id?: Uint8Array;
  /** The deadline of each collective, in ms; default MOEKIT_COMM_TIMEOUT_MS, else 600000. */
  timeoutMs?: number;
  /** nccl: the CUDA device index of this rank; default rank mod the number of devices. */
  device?: number;
}

export interface AllToAllVResult {
  /** The rows received, grouped by source rank in rank order. */
  tensor: Tensor;
  /** Rows received from each rank. */
  recvCounts: number[];
}

const BACKENDS: readonly CommBackend[] = ['nccl', 'mpi', 'local'];
const OPS: readonly ReduceOp[] = ['sum', 'avg', 'max'];
const INIT_KEYS = ['backend', 'rank', 'size', 'id', 'timeoutMs', 'device'] as const;
const REDUCIBLE: readonly DType[] = ['f32', 'i32'];

/** Communicators not closed yet: aborted when the process exits with a failure. */
const open = new Set<Communicator>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', (code) => {
    if (code === 0) return;
    for (const comm of open) comm.abort(`rank ${comm.rank} exited with code ${code} while the communicator was open`);
  });
}

function checkOp(value: unknown, name: string): ReduceOp {
  if (typeof value !== 'string' || !(OPS as readonly string[]).includes(value)) {
    throw new ArgumentError(`${name} must be 'sum', 'avg' or 'max', got ${describe(value)}`);
  }
  return value as ReduceOp;
}

function checkCommTensor(value: unknown, name: string): Tensor {
  if (!Tensor.isTensor(value)) throw new ArgumentError(`${name} must be a Tensor, got ${describe(value)}`);
  if (value.disposed) throw new DisposedError(`${name} has been disposed and cannot be used`);
  return value;
}

function checkReducible(t: Tensor, name: string, op: ReduceOp, collective: string): void {
  if (!REDUCIBLE.includes(t.dtype)) throw new DTypeError(`${name} must be an f32 or i32 tensor for ${collective}, got ${t.dtype}`);
  if (op === 'avg' && t.dtype !== 'f32') throw new DTypeError(`${name} must be an f32 tensor for ${collective} with op 'avg', got ${t.dtype}`);
}

function checkLeadingDim(t: Tensor, name: string, collective: string): number {
  if (t.shape.length === 0) throw new ShapeError(`${name} must have at least one dimension for ${collective} (it splits dimension 0), got shape []`);
  return t.shape[0];
}

/** A group of ranks that run collectives together (see the file comment). */
export class Communicator {
  readonly backend: CommBackend;
  readonly rank: number;
  readonly size: number;
  /** The deadline of each collective, in ms ('local' never waits). */
  readonly timeoutMs: number;
  #handle: NativeCommunicator;

  /** Made by dist.init(). @internal */
  constructor(handle: NativeCommunicator) {
    this.#handle = handle;
    this.backend = handle.backend as CommBackend;
    this.rank = handle.rank;
    this.size = handle.size;
    this.timeoutMs = handle.timeoutMs;
  }

  get closed(): boolean {
    return this.#handle.closed;
  }

  /** The native communicator, for the modules of this package. @internal */
  get handle(): NativeCommunicator {
    return this.#live('comm');
  }

  /** A new tensor: op over every rank's t, element-wise. t is not modified. */
  allReduce(t: Tensor, op: ReduceOp = 'sum'): Tensor {
    const handle = this.#live('allReduce');
    const x = checkCommTensor(t, 't');
    const o = checkOp(op, 'op');
    checkReducible(x, 't', o, 'allReduce');
    return Tensor.wrap(handle.allReduce(x.handle, o));
  }

  /** Every rank's t concatenated along dimension 0 in rank order ([size] for a scalar). */
  allGather(t: Tensor): Tensor {
    const handle = this.#live('allGather');
    return Tensor.wrap(handle.allGather(checkCommTensor(t, 't').handle));
  }

  /** Block `rank` (of `size` equal blocks along dimension 0) of op over every rank's t. */
  reduceScatter(t: Tensor, op: ReduceOp = 'sum'): Tensor {
    const handle = this.#live('reduceScatter');
    const x = checkCommTensor(t, 't');
    const o = checkOp(op, 'op');
    checkReducible(x, 't', o, 'reduceScatter');
    const rows = checkLeadingDim(x, 't', 'reduceScatter');
    if (rows % this.size !== 0) {
      throw new ShapeError(`t has shape [${x.shape.join(', ')}]: reduceScatter needs shape[0] divisible by the communicator size ${this.size}`);
    }
    return Tensor.wrap(handle.reduceScatter(x.handle, o));
  }

  /** A new tensor holding root's t on every rank. */
  broadcast(t: Tensor, root: number): Tensor {
    const handle = this.#live('broadcast');
    const x = checkCommTensor(t, 't');
    const r = checkInteger(root, 'root', 0, this.size - 1);
    return Tensor.wrap(handle.broadcast(x.handle, r));
  }

  /** Rows of t, sendCounts[r] of them to rank r in rank order; returns the rows received. */
  allToAllV(t: Tensor, sendCounts: number[]): AllToAllVResult {
    const handle = this.#live('allToAllV');
    const x = checkCommTensor(t, 't');
    const rows = checkLeadingDim(x, 't', 'allToAllV');
    const counts = checkSizes(sendCounts, 'sendCounts', this.size, 0, rows, 't.shape[0]');
    const r = handle.allToAllV(x.handle, counts);
    return { tensor: Tensor.wrap(r.tensor), recvCounts: r.recvCounts };
  }

  /** Returns once every rank has called barrier(). */
  barrier(): void {
    this.#live('barrier').barrier();
  }

  /**
   * A new communicator over the ranks passing the same color (an integer ≥ 0), ranked by
   * (key, this rank); collective: every rank calls it (see the file comment).
   */
  split(color: number, key: number = this.rank): Communicator {
    const handle = this.#live('split');
    // A color < 0 is refused by every rank alike after they exchanged colors (native/comm), so
    // here only the type and the int32 range are checked.
    const c = checkInteger(color, 'color', -(2 ** 31), 2 ** 31 - 1);
    const k = checkInteger(key, 'key', -(2 ** 31), 2 ** 31 - 1);
    const comm = new Communicator(handle.split(c, k));
    open.add(comm);
    return comm;
  }

  /** Breaks the communicator here and tells the peers, whose collectives fail with CommError. */
  abort(reason = 'comm.abort() was called'): void {
    if (typeof reason !== 'string') throw new ArgumentError(`reason must be a string, got ${describe(reason)}`);
    if (this.#handle.closed) return;
    this.#handle.abort(reason);
  }

  /** Releases the communicator (local to this rank: no peer is contacted). Idempotent. */
  close(): void {
    this.#handle.close();
    open.delete(this);
  }

  #live(what: string): NativeCommunicator {
    if (this.#handle.closed) throw new DisposedError(`${what}: the communicator was closed`);
    return this.#handle;
  }
}

function init(opts: DistInitOptions): Communicator {
  // A plain copy, each option read once: what was checked is what native code reads.
  const o: Record<string, unknown> = { ...checkObject(opts, 'opts') };
  checkKeys(o, 'opts', INIT_KEYS);
  if (typeof o.backend !== 'string' || !(BACKENDS as readonly string[]).includes(o.backend)) {
    throw new ArgumentError(`opts.backend must be 'nccl', 'mpi' or 'local', got ${describe(o.backend)}`);
  }
  const size = o.size === undefined ? undefined : checkInteger(o.size, 'opts.size', 1);
  const rank = o.rank === undefined ? undefined : checkInteger(o.rank, 'opts.rank', 0, size === undefined ? undefined : size - 1);
  if (o.timeoutMs !== undefined) checkInteger(o.timeoutMs, 'opts.timeoutMs', 1);
  if (o.device !== undefined) checkInteger(o.device, 'opts.device', 0);
  if (o.id !== undefined) {
    if (Object.prototype.toString.call(o.id) !== '[object Uint8Array]') {
      throw new ArgumentError(`opts.id must be a Uint8Array of 128 bytes (dist.ncclUniqueId()), got ${describe(o.id)}`);
    }
    if ((o.id as Uint8Array).length !== 128) throw new ShapeError(`opts.id must hold 128 bytes (dist.ncclUniqueId()), got ${(o.id as Uint8Array).length}`);
    if (o.backend !== 'nccl') throw new ArgumentError(`opts.id is only for backend 'nccl', got backend '${o.backend}'`);
    if (rank === undefined || size === undefined) {
      throw new ArgumentError(`opts.rank and opts.size are needed with opts.id (every rank passes the same id and size, and its own rank)`);
    }
  }
  if (o.device !== undefined && o.backend !== 'nccl') throw new ArgumentError(`opts.device is only for backend 'nccl', got backend '${o.backend}'`);
  const comm = new Communicator(new native.NativeCommunicator(o as unknown as DistInitOptions));
  open.add(comm);
  installExitHook();
  return comm;
}

/** 128 bytes for dist.init({backend: 'nccl', rank, size, id}): made on one rank, shared by the caller. */
function ncclUniqueId(): Uint8Array {
  return native.NativeCommunicator.ncclUniqueId();
}

export const dist = { init, ncclUniqueId };
