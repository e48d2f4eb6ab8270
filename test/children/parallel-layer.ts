/**
 * The parallel MoE layer under MPI, run by test/parallel-layer.test.ts as
 * `mpirun -np N node -r register.js parallel-layer.ts <mode> [device]`. Each rank holds the
 * rank-th of N consecutive slices of every batch and builds, besides the parallel layer, a
 * single-process reference layer from the same config and seed, which it runs itself on what the
 * mode says; every rank then compares what it can see and prints one line
 * "PARALLEL-REPORT {rank, size, checks, failures, worst, extra}".
 *
 * Modes:
 *   equivalence   expert parallelism + global balance (window counts all-reduced, bias B1), z and
 *                 orthogonality, dropless, softmax and sigmoid routers, two micro-batches per
 *                 window (slices of 4 + 2r tokens, then 8 with rank 0 empty: unequal token
 *                 shares), two expert groups and a shared expert: y and dx (this rank's slice),
 *                 losses (Σ over ranks of the rank shares), counts (Σ over ranks), grads after
 *                 allReduceGrads, router.bias after endStep and one more step, against one
 *                 process running each whole batch.
 *   capacity      a capacity factor: capacity is per rank, from its own tokens (as Megatron does
 *                 before the exchange), so the reference is one process running each quarter as
 *                 its own batch, with the loss coefficients scaled by the rank's token share 1/N;
 *                 the balance loss is micro-batch scope there (per rank by definition).
 *   hierarchical  ranksPerNode = 2 (N = 4: two nodes) against the flat exchange: bitwise equal
 *                 y, dx, losses and grads; the message counts per destination go in `extra`.
 *   micro         losses.balance.microFraction under data parallelism: Σ ranks' balance = the
 *                 whole batch's global balance + microFraction·Σ_r (1/N)·(micro balance of slice r).
 *   errors        misuse that needs real ranks: typed errors, and the communicator still works.
 *   grid          N = 4 as 2 data replicas × 2 expert ranks, from comm.split: expert groups
 *                 split(rank >> 1) = {0, 1}, {2, 3}, data groups split(rank & 1) = {0, 2}, {1, 3}.
 *                 Replica d (ranks 2d, 2d + 1) holds half d of every batch, split between its two
 *                 expert ranks (so rank r still holds slice r); each expert rank holds half of
 *                 every group's experts, the same half in both replicas. Softmax, dropless, global
 *                 balance, unequal slices as in equivalence: y, dx, indices, counts and losses
 *                 (Σ ranks), grads after allReduceGrads() (expert then data group), router.bias.
 *
 * Comparisons use ‖got − want‖₂ / ‖want‖₂ ≤ 1e-5 (the brief's relative tolerance: float32 sums in
 * another order — a rank's slice, the exchange's row order, the owner's own GEMMs — differ from the
 * single process by ~1e-7 relative); integer decisions and counts are compared exactly.
 */
import { MoEConfig, MoELayer, MoEOutput, MoEConfigError, ShapeError, Tensor, dist } from '../../lib';
import { relativeError } from '../helpers/golden';
import { uniformTensor } from '../helpers/random';

const mode = process.argv[2];
const device = process.argv[3] ?? 'cpu';
const comm = dist.init({ backend: 'mpi', timeoutMs: Number(process.env.MOEKIT_TEST_TIMEOUT_MS ?? 60000) });
const { rank, size } = comm;
const TOL = 1e-5;
const H = 16;
const ROWS = 6; // tokens per rank per micro-batch

const failures: string[] = [];
let checks = 0;
let worst = 0;
const extra: Record<string, unknown> = {};

function check(ok: boolean, what: string): void {
  checks++;
  if (!ok) failures.push(what);
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = TOL): void {
  const err = relativeError(got, want);
  worst = Math.max(worst, err);
  check(err <= tol, `${what}: relative error ${err} > ${tol}`);
}

function same(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  const a = Array.from(got);
  const b = Array.from(want);
  const at = a.findIndex((v, i) => !Object.is(v, b[i]));
  check(a.length === b.length && at < 0, `${what}: differs${at >= 0 ? ` at ${at}: ${a[at]} vs ${b[at]}` : ` in length ${a.length} vs ${b.length}`}`);
}

function values(t: Tensor): number[] {
  return Array.from(t.toArray());
}

/** Rows [start, start + count) of a 2-D (or [n, …]) tensor's values. */
function rowsOf(t: Tensor, start: number, count: number): number[] {
  const per = t.shape.slice(1).reduce((a, b) => a * b, 1);
  return values(t).slice(start * per, (start + count) * per);
}

function onDevice(t: Tensor): Tensor {
  return device === 'cpu' ? t : t.to(device);
}

/** A whole batch (the same on every rank) of rows[r] tokens per rank r, and this rank's slice of it. */
function batch(seed: number, rows: number[] = new Array<number>(size).fill(ROWS)): { whole: Tensor; mine: Tensor; start: number; count: number } {
  const whole = uniformTensor([rows.reduce((a, b) => a + b, 0), H], seed);
  const start = rows.slice(0, rank).reduce((a, b) => a + b, 0);
  const count = rows[rank];
  const mine = Tensor.from(Float32Array.from(rowsOf(whole, start, count)), [count, H]);
  return { whole: onDevice(whole), mine: onDevice(mine), start, count };
}

/** Σ over ranks of a few numbers (f32 allReduce: ~6e-8 relative, far below TOL). */
function sumOverRanks(xs: number[]): number[] {
  return values(comm.allReduce(Tensor.from(Float32Array.from(xs), [xs.length]), 'sum'));
}

function lossesOf(out: MoEOutput): number[] {
  return [out.losses.balance ?? 0, out.losses.z ?? 0, out.losses.orthogonality ?? 0, out.aux];
}

/** This rank's block of a routed-expert parameter: rows [rank·n/size, (rank+1)·n/size) of the full tensor. */
function block(full: Tensor): number[] {
  const local = full.shape[0] / size;
  return rowsOf(full, rank * local, local);
}

function compareGrads(par: MoELayer, ref: MoELayer, what: string): void {
  const mine = par.grads();
  const all = ref.grads();
  for (const [name, g] of Object.entries(all)) {
    close(values(mine[name]), name.startsWith('experts.') ? block(g) : values(g), `${what} grad ${name}`);
  }
}

function base(score: 'softmax' | 'sigmoid'): MoEConfig {
  return {
    hidden: H,
    experts: [{ name: 'a', count: 8, ffnHidden: 12 }, { name: 'b', count: 4, ffnHidden: 6 }],
    sharedExperts: { count: 1, ffnHidden: 8 },
    activation: 'swiglu',
    router: { topK: 3, score, normalize: true, bias: true, biasUpdateRate: 0.01 },
    losses: { balance: { coeff: 0.05, scope: 'global' }, z: { coeff: 1e-3 }, orthogonality: { coeff: 1e-2 } },
    seed: 5,
    device,
  };
}

function equivalence(score: 'softmax' | 'sigmoid'): void {
  const config = base(score);
  const ref = new MoELayer(config);
  const par = new MoELayer({ ...config, parallel: { expert: comm } });
  const tag = `${score}:`;
  // The same seed gives every rank the block of the same model.
  const refParams = ref.parameters();
  for (const [name, p] of Object.entries(par.parameters())) {
    same(values(p), name.startsWith('experts.') ? block(refParams[name]) : values(refParams[name]), `${tag} initial ${name}`);
  }
  const range = par.expertRange();
  check(JSON.stringify(range) === JSON.stringify([
    { group: 'a', start: (rank * 8) / size, end: ((rank + 1) * 8) / size },
    { group: 'b', start: 8 + (rank * 4) / size, end: 8 + ((rank + 1) * 4) / size },
  ]), `${tag} expertRange ${JSON.stringify(range)}`);

  // Slices of different sizes (so the token shares differ), and in one micro-batch rank 0 holds none.
  const rows = [Array.from({ length: size }, (_, r) => 4 + 2 * r), Array.from({ length: size }, (_, r) => (r === 0 ? 0 : 8))];
  for (let step = 0; step < 2; step++) {
    for (let micro = 0; micro < 2; micro++) {
      const where = `${tag} step ${step} micro-batch ${micro}`;
      const x = batch(100 + 10 * step + micro, rows[micro]);
      const dy = batch(200 + 10 * step + micro, rows[micro]);
      const want = ref.forward(x.whole);
      const got = par.forward(x.mine);
      check(got.y.device === device && want.y.device === device, `${where} y on ${got.y.device} and ${want.y.device}, not ${device}`);
      close(values(got.y), rowsOf(want.y, x.start, x.count), `${where} y`);
      same(values(got.routing.indices), rowsOf(want.routing.indices, x.start, x.count), `${where} indices`);
      same(sumOverRanks(Array.from(got.stats.counts)), Array.from(want.stats.counts), `${where} counts (Σ ranks)`);
      const summed = sumOverRanks(lossesOf(got));
      lossesOf(want).forEach((v, i) => close([summed[i]], [v], `${where} loss ${['balance', 'z', 'orthogonality', 'aux'][i]} (Σ ranks)`));
      close(values(par.backward(dy.mine).dx), rowsOf(ref.backward(dy.whole).dx, x.start, x.count), `${where} dx`);
    }
    par.allReduceGrads();
    compareGrads(par, ref, `${tag} step ${step}`);
    ref.endStep();
    par.endStep();
    same(values(par.stateDict()['router.bias']), values(ref.stateDict()['router.bias']), `${tag} step ${step} router.bias after endStep`);
    ref.zeroGrad();
    par.zeroGrad();
  }
  // An evaluation forward, and the state dict: the rank's block out, the full state or a block in.
  const x = batch(300);
  close(values(par.forward(x.mine, { training: false }).y), rowsOf(ref.forward(x.whole, { training: false }).y, rank * ROWS, ROWS), `${tag} evaluation y`);
  const sd = par.stateDict();
  check(sd['experts.a.w1'].shape.join() === [8 / size, 12, H].join(), `${tag} stateDict experts.a.w1 is the block, got [${sd['experts.a.w1'].shape}]`);
  const fresh = new MoELayer({ ...config, seed: 6, parallel: { expert: comm } });
  fresh.loadStateDict(ref.stateDict());
  same(values(fresh.parameters()['experts.b.w2']), block(ref.parameters()['experts.b.w2']), `${tag} loadStateDict(full) keeps the block`);
  fresh.loadStateDict(sd);
  same(values(fresh.parameters()['experts.a.w3']), values(par.parameters()['experts.a.w3']), `${tag} loadStateDict(block)`);
  for (const layer of [ref, par, fresh]) layer.dispose();
}

function capacity(policy: 'position' | 'score'): void {
  const shareOfCoeff = 1 / size; // each rank holds 1/size of the tokens: its losses are scaled by it
  const config = (coeffScale: number): MoEConfig => ({
    hidden: H,
    experts: [{ name: 'e', count: 8, ffnHidden: 10 }],
    activation: 'gelu',
    router: { topK: 2, bias: true },
    capacity: { factor: 0.75, policy },
    losses: { balance: { coeff: 0.1 * coeffScale, scope: 'micro' }, z: { coeff: 1e-2 * coeffScale } },
    seed: 9,
    device,
  });
  const ref = new MoELayer(config(shareOfCoeff));
  const par = new MoELayer({ ...config(1), parallel: { expert: comm } });
  const x = batch(400, new Array<number>(size).fill(10));
  const dy = batch(401, new Array<number>(size).fill(10));
  const got = par.forward(x.mine);
  const { dx } = par.backward(dy.mine);
  let dropped = 0;
  for (let q = 0; q < size; q++) {
    const slice = (t: Tensor) => onDevice(Tensor.from(Float32Array.from(rowsOf(t, q * 10, 10)), [10, H]));
    const want = ref.forward(slice(x.whole));
    const wantDx = ref.backward(slice(dy.whole)).dx;
    dropped += Array.from(want.stats.dropped).reduce((a, b) => a + b, 0);
    if (q !== rank) continue;
    const where = `${policy}: quarter ${q}`;
    close(values(got.y), values(want.y), `${where} y`);
    close(values(dx), values(wantDx), `${where} dx`);
    for (const key of ['counts', 'accepted', 'dropped'] as const) same(Array.from(got.stats[key]), Array.from(want.stats[key]), `${where} ${key}`);
    same(values(got.routing.keep), values(want.routing.keep), `${where} keep`);
    lossesOf(got).forEach((v, i) => close([v], [lossesOf(want)[i]], `${where} loss ${i}`));
  }
  check(dropped > 0, `${policy}: the capacity factor drops some assignments (got ${dropped})`);
  par.allReduceGrads();
  compareGrads(par, ref, policy);
  ref.endStep();
  par.endStep();
  same(values(par.stateDict()['router.bias']), values(ref.stateDict()['router.bias']), `${policy}: router.bias after endStep (window over all quarters)`);
}

function hierarchical(): void {
  const config: MoEConfig = {
    ...base('softmax'),
    experts: [{ name: 'a', count: 8, ffnHidden: 12 }],
    router: { topK: 3, normalize: true, groupLimited: { groups: 2, topGroups: 2 } },
  };
  const flat = new MoELayer({ ...config, parallel: { expert: comm } });
  const hier = new MoELayer({ ...config, parallel: { expert: comm, ranksPerNode: 2 } });
  const ref = new MoELayer(config);
  for (let micro = 0; micro < 2; micro++) {
    const x = batch(500 + micro);
    const dy = batch(600 + micro);
    const a = flat.forward(x.mine);
    const b = hier.forward(x.mine);
    same(values(b.y), values(a.y), `micro-batch ${micro}: y hierarchical vs flat`);
    same(lossesOf(b), lossesOf(a), `micro-batch ${micro}: losses hierarchical vs flat`);
    close(values(b.y), rowsOf(ref.forward(x.whole).y, rank * ROWS, ROWS), `micro-batch ${micro}: y hierarchical vs one process`);
    same(values(hier.backward(dy.mine).dx), values(flat.backward(dy.mine).dx), `micro-batch ${micro}: dx hierarchical vs flat`);
  }
  flat.allReduceGrads();
  hier.allReduceGrads();
  const fg = flat.grads();
  for (const [name, g] of Object.entries(hier.grads())) same(values(g), values(fg[name]), `grad ${name} hierarchical vs flat`);
  const flatStats = flat.exchangeStats();
  const hierStats = hier.exchangeStats();
  check(flatStats?.hierarchical === false && hierStats?.hierarchical === true, 'exchangeStats().hierarchical');
  extra.flat = flatStats;
  extra.hierarchical = hierStats;
}

function microFraction(): void {
  const config = (balance: { coeff: number; scope: 'micro' | 'global'; microFraction?: number }): MoEConfig => ({
    hidden: H, experts: [{ name: 'e', count: 8, ffnHidden: 6 }], activation: 'relu', router: { topK: 2 }, losses: { balance }, seed: 3, device,
  });
  const fraction = 0.25;
  const par = new MoELayer({ ...config({ coeff: 0.1, scope: 'global', microFraction: fraction }), parallel: { data: comm } });
  const global = new MoELayer(config({ coeff: 0.1, scope: 'global' }));
  const micro = new MoELayer(config({ coeff: 0.1, scope: 'micro' }));
  const x = batch(700);
  const got = sumOverRanks([par.forward(x.mine).losses.balance ?? NaN])[0];
  let want = global.forward(x.whole).losses.balance ?? NaN;
  for (let q = 0; q < size; q++) {
    const slice = onDevice(Tensor.from(Float32Array.from(rowsOf(x.whole, q * ROWS, ROWS)), [ROWS, H]));
    want += (fraction / size) * (micro.forward(slice).losses.balance ?? NaN);
  }
  close([got], [want], 'Σ ranks balance = global + microFraction·mean of the slices’ micro balance');
}

function describeError(call: () => unknown): string {
  try {
    call();
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
  return 'no error';
}

function errors(): void {
  const config: MoEConfig = { hidden: H, experts: [{ name: 'e', count: 2 * size, ffnHidden: 4 }], activation: 'relu', router: { topK: 2 }, seed: 1 };
  const expectError = (call: () => unknown, errorClass: new (...args: never[]) => Error, message: RegExp, what: string) => {
    let caught: unknown;
    try {
      call();
    } catch (error) {
      caught = error;
    }
    check(caught instanceof errorClass && message.test((caught as Error).message), `${what}: got ${caught === undefined ? 'no error' : describeError(() => { throw caught; })}`);
  };
  expectError(() => new MoELayer({ ...config, experts: [{ name: 'e', count: size + 1, ffnHidden: 4 }], parallel: { expert: comm } }), MoEConfigError,
    new RegExp(`config\\.experts\\[0\\]\\.count must be a multiple of the expert-parallel size ${size}`), 'count not a multiple of the expert group');
  expectError(() => new MoELayer({ ...config, parallel: { expert: comm, ranksPerNode: 3 } }), MoEConfigError,
    /config\.parallel\.ranksPerNode must be (a divisor of the expert-parallel size|an integer in \[1, 2\])/, 'ranksPerNode not a divisor');
  if (size >= 4) {
    expectError(() => new MoELayer({ ...config, experts: [{ name: 'e', count: 8, ffnHidden: 4 }], router: { topK: 2, groupLimited: { groups: 4, topGroups: 2 } }, parallel: { expert: comm, ranksPerNode: 2 } }),
      MoEConfigError, /config\.router\.groupLimited\.groups must be the 2 nodes of the hierarchical exchange/, 'group-limited routing that is not node-limited');
  }
  // The ranks disagree on the layer: the constructor's agreement check fails alike on every rank.
  expectError(() => new MoELayer({ ...config, hidden: H + 2 * rank, parallel: { expert: comm } }), ShapeError,
    /new MoELayer: hidden: the ranks disagree/, 'ranks with different hidden sizes');
  // The communicator is still usable, and a good layer works after all that.
  const layer = new MoELayer({ ...config, parallel: { expert: comm } });
  const out = layer.forward(batch(800).mine);
  check(out.y.shape.join() === [ROWS, H].join(), 'a layer built after the errors runs');
  const grads = layer.grads()['experts.e.w1'];
  check(grads.shape[0] === 2, `experts.e.w1 grad is this rank's block of 2 experts, got [${grads.shape}]`);
}

function grid(): void {
  if (size !== 4) throw new Error(`grid runs on 4 ranks, got ${size}`);
  const expert = comm.split(rank >> 1);
  const data = comm.split(rank & 1);
  check(expert.size === 2 && expert.rank === (rank & 1) && data.size === 2 && data.rank === rank >> 1,
    `grid: expert rank ${expert.rank} of ${expert.size}, data rank ${data.rank} of ${data.size}`);
  /** This rank's expert block: half expert.rank of the experts (the expert group has 2 ranks). */
  const half = (full: Tensor) => rowsOf(full, expert.rank * (full.shape[0] / 2), full.shape[0] / 2);
  const config = base('softmax');
  const ref = new MoELayer(config);
  const par = new MoELayer({ ...config, parallel: { expert, data } });
  const refParams = ref.parameters();
  for (const [name, p] of Object.entries(par.parameters())) {
    same(values(p), name.startsWith('experts.') ? half(refParams[name]) : values(refParams[name]), `grid: initial ${name}`);
  }
  const rows = [[4, 6, 8, 10], [0, 8, 8, 8]];
  for (let step = 0; step < 2; step++) {
    for (let micro = 0; micro < 2; micro++) {
      const where = `grid: step ${step} micro-batch ${micro}`;
      const x = batch(900 + 10 * step + micro, rows[micro]);
      const dy = batch(950 + 10 * step + micro, rows[micro]);
      const want = ref.forward(x.whole);
      const got = par.forward(x.mine);
      close(values(got.y), rowsOf(want.y, x.start, x.count), `${where} y`);
      same(values(got.routing.indices), rowsOf(want.routing.indices, x.start, x.count), `${where} indices`);
      same(sumOverRanks(Array.from(got.stats.counts)), Array.from(want.stats.counts), `${where} counts (Σ ranks)`);
      const summed = sumOverRanks(lossesOf(got));
      lossesOf(want).forEach((v, i) => close([summed[i]], [v], `${where} loss ${['balance', 'z', 'orthogonality', 'aux'][i]} (Σ ranks)`));
      close(values(par.backward(dy.mine).dx), rowsOf(ref.backward(dy.whole).dx, x.start, x.count), `${where} dx`);
    }
    par.allReduceGrads();
    const mine = par.grads();
    for (const [name, g] of Object.entries(ref.grads())) {
      close(values(mine[name]), name.startsWith('experts.') ? half(g) : values(g), `grid: step ${step} grad ${name}`);
    }
    ref.endStep();
    par.endStep();
    same(values(par.stateDict()['router.bias']), values(ref.stateDict()['router.bias']), `grid: step ${step} router.bias after endStep`);
    ref.zeroGrad();
    par.zeroGrad();
  }
  for (const layer of [ref, par]) layer.dispose();
  expert.close();
  data.close();
}

switch (mode) {
  case 'equivalence':
    equivalence('softmax');
    equivalence('sigmoid');
    break;
  case 'capacity':
    capacity('position');
    capacity('score');
    break;
  case 'hierarchical':
    hierarchical();
    break;
  case 'micro':
    microFraction();
    break;
  case 'errors':
    errors();
    break;
  case 'grid':
    grid();
    break;
  default:
    throw new Error(`unknown mode ${mode}`);
}
console.log(`PARALLEL-REPORT ${JSON.stringify({ rank, size, checks, failures, worst, extra })}`);
comm.close();
