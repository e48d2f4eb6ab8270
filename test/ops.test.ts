/**
 * The stateless ops, losses and AdamW (DESIGN §2): properties against JavaScript float64
 * references, finite-difference checks of every backward, golden routing cases (§6) and the
 * typed errors of §4 (facade and native layer).
 */
import { ArgumentError, DisposedError, DTypeError, MoEConfigError, ShapeError, Tensor } from '../lib';
import { MoEConfig } from '../lib/config';
import { losses } from '../lib/losses';
import { native } from '../lib/native';
import { AdamW } from '../lib/optim';
import { ops } from '../lib/ops';
import { loadGolden, relativeError } from './helpers/golden';
import { prng } from './helpers/random';

// ---- helpers ---------------------------------------------------------------------------------------


const int = (rand: () => number, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const uniform = (rand: () => number, n: number, scale = 1) => Float32Array.from({ length: n }, () => (2 * rand() - 1) * scale);
const f32 = (data: ArrayLike<number>, shape: number[]) => Tensor.from(Float32Array.from(data), shape);
const i32 = (data: ArrayLike<number>, shape: number[]) => Tensor.from(Int32Array.from(data), shape);
const values = (t: Tensor) => Array.from(t.toArray());

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Central differences of a float64 objective with respect to inputs[which]. The perturbation is
 * the f32-representable one actually applied, so the quotient has no rounding bias. Coordinates for
 * which `skip(i)` holds are left 0.
 */
function finiteDifference(
  objective: (inputs: Float32Array[]) => number,
  inputs: Float32Array[],
  which: number,
  eps: number,
  skip: (i: number) => boolean = () => false,
): Float64Array {
  const grad = new Float64Array(inputs[which].length);
  for (let i = 0; i < grad.length; i++) {
    if (skip(i)) continue;
    const x = inputs[which][i];
    const hi = Math.fround(x + eps);
    const lo = Math.fround(x - eps);
    const at = (v: number) => objective(inputs.map((a, j) => (j === which ? Object.assign(a.slice(), { [i]: v }) : a)));
    grad[i] = (at(hi) - at(lo)) / (hi - lo);
  }
  return grad;
}

// ---- permute / unpermute ----------------------------------------------------------------------------

describe('ops.permute / ops.unpermute (dispatch and combine, X2)', () => {
  test('permute then unpermute with weights 1 gives each token times its kept slots: the identity for one slot, 0 for all-dropped tokens (60 seeded cases)', () => {
    const rand = prng(7);
    for (let c = 0; c < 60; c++) {
      const T = int(rand, 0, 12), H = int(rand, 1, 6), E = int(rand, 1, 6), k = int(rand, 1, 3);
      const x = uniform(rand, T * H);
      const experts = Int32Array.from({ length: T * k }, () => (rand() < 0.2 ? -1 : int(rand, 0, E - 1)));
      const p = ops.permute(f32(x, [T, H]), i32(experts, [T, k]), E);
      const n = experts.filter((e) => e >= 0).length;
      expect(p.output.shape).toEqual([n, H]);
      const y = ops.unpermute(p.output, p.rowToken, f32(new Float32Array(n).fill(1), [n]), T).output.toArray();
      for (let t = 0; t < T; t++) {
        const kept = Array.from(experts.subarray(t * k, (t + 1) * k)).filter((e) => e >= 0).length;
        for (let h = 0; h < H; h++) expect(y[t * H + h]).toBeCloseTo(kept * x[t * H + h], 5);
      }
      // Rows are grouped by expert, token order within an expert; counts are the group sizes.
      const rowToken = p.rowToken.toArray();
      const counts = values(p.counts);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(n);
      for (let e = 0, r = 0; e < E; e++) {
        const want = [];
        for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) if (experts[t * k + j] === e) want.push(t);
        expect(counts[e]).toBe(want.length);
        expect(Array.from(rowToken.subarray(r, r + want.length))).toEqual(want);
        r += want.length;
      }
    }
  });

  test('top-1 without drops round-trips exactly (the identity)', () => {
    const rand = prng(11);
    const T = 9, H = 5, E = 4;
    const x = uniform(rand, T * H);
    const experts = Int32Array.from({ length: T }, () => int(rand, 0, E - 1));
    const p = ops.permute(f32(x, [T, H]), i32(experts, [T, 1]), E);
    expect(Array.from(ops.unpermute(p.output, p.rowToken, null, T).output.toArray())).toEqual(Array.from(x));
  });

  test('permute backward matches finite differences', () => {
    const rand = prng(12);
    const T = 5, H = 3, E = 3, k = 2;
    const experts = i32([0, 2, 1, -1, 2, 0, -1, -1, 1, 1], [T, k]);
    const x = uniform(rand, T * H);
    const n = 7;
    const G = uniform(rand, n * H);
    const objective = ([xv]: Float32Array[]) => dot(ops.permute(f32(xv, [T, H]), experts, E).output.toArray(), G);
    const dx = ops.permute(f32(x, [T, H]), experts, E).backward(f32(G, [n, H])).toArray();
    expect(relativeError(dx, finiteDifference(objective, [x], 0, 1e-2))).toBeLessThan(1e-4);
  });

  test('unpermute backward gives dRows and dWeights matching finite differences', () => {
    const rand = prng(13);
    const T = 4, H = 3, n = 6;
    const rows = uniform(rand, n * H);
    const weights = uniform(rand, n);
    const rowToken = i32([0, 2, 2, 3, 0, 1], [n]);
    const G = uniform(rand, T * H);
    const objective = ([r, w]: Float32Array[]) => dot(ops.unpermute(f32(r, [n, H]), rowToken, f32(w, [n]), T).output.toArray(), G);
    const grads = ops.unpermute(f32(rows, [n, H]), rowToken, f32(weights, [n]), T).backward(f32(G, [T, H]));
    expect(relativeError(grads.dRows.toArray(), finiteDifference(objective, [rows, weights], 0, 1e-2))).toBeLessThan(1e-4);
    expect(relativeError(grads.dWeights!.toArray(), finiteDifference(objective, [rows, weights], 1, 1e-2))).toBeLessThan(1e-4);
    expect(ops.unpermute(f32(rows, [n, H]), rowToken, null, T).backward(f32(G, [T, H])).dWeights).toBeNull();
  });
});

// ---- grouped GEMM -----------------------------------------------------------------------------------

/** out_g = a_g · w_gᵀ in float64. */
function gemmReference(a: Float32Array, w: Float32Array, sizes: number[], K: number, N: number): Float64Array {
  const M = sizes.reduce((x, y) => x + y, 0);
  const out = new Float64Array(M * N);
  for (let g = 0, row = 0; g < sizes.length; g++) {
    for (let end = row + sizes[g]; row < end; row++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let i = 0; i < K; i++) s += a[row * K + i] * w[(g * N + j) * K + i];
        out[row * N + j] = s;
      }
    }
  }
  return out;
}

describe('ops.groupedGemm (m-grouped contiguous NT)', () => {
  test('matches a float64 reference, including groups of 0 and 1 rows', () => {
    const rand = prng(21);
    const cases: { sizes: number[]; K: number; N: number }[] = [
      { sizes: [0, 1, 5, 0], K: 7, N: 3 },
      { sizes: [1], K: 1, N: 1 },
      { sizes: [0, 0, 0], K: 4, N: 2 },
      { sizes: [3, 0, 1, 8, 1], K: 33, N: 17 },
    ];
    for (const { sizes, K, N } of cases) {
      const M = sizes.reduce((x, y) => x + y, 0), G = sizes.length;
      const a = uniform(rand, M * K), w = uniform(rand, G * N * K);
      const out = ops.groupedGemm(f32(a, [M, K]), f32(w, [G, N, K]), sizes).output;
      expect(out.shape).toEqual([M, N]);
      const want = gemmReference(a, w, sizes, K, N);
      expect(relativeError(out.toArray(), want)).toBeLessThan(1e-6);
    }
  });

  test('backward (da, dw) matches finite differences; empty groups get dw = 0', () => {
    const rand = prng(22);
    const sizes = [2, 0, 3], K = 4, N = 3, M = 5, G = 3;
    const a = uniform(rand, M * K), w = uniform(rand, G * N * K), D = uniform(rand, M * N);
    const objective = ([av, wv]: Float32Array[]) => dot(ops.groupedGemm(f32(av, [M, K]), f32(wv, [G, N, K]), sizes).output.toArray(), D);
    const grads = ops.groupedGemm(f32(a, [M, K]), f32(w, [G, N, K]), sizes).backward(f32(D, [M, N]));
    expect(relativeError(grads.da.toArray(), finiteDifference(objective, [a, w], 0, 1e-2))).toBeLessThan(1e-4);
    const dw = grads.dw.toArray();
    expect(relativeError(dw, finiteDifference(objective, [a, w], 1, 1e-2))).toBeLessThan(1e-4);
    expect(Array.from(dw.subarray(N * K, 2 * N * K)).every((v) => v === 0)).toBe(true);
  });

  test('bf16 a and w: bit-equal to the f32 GEMM over their values (bf16 products are exact in f32), f32 gradients', () => {
    const rand = prng(23);
    const sizes = [3, 0, 9, 1], K = 40, N = 24, M = 13, G = 4;
    const a = f32(uniform(rand, M * K), [M, K]).to('bf16');
    const w = f32(uniform(rand, G * N * K), [G, N, K]).to('bf16');
    const aValues = f32(a.toArray(), [M, K]);
    const wValues = f32(w.toArray(), [G, N, K]);
    // The rounding happened: the values differ from the f32 inputs they came from.
    expect(Array.from(aValues.toArray()).every((v) => (new Uint32Array(new Float32Array([v]).buffer)[0] & 0xffff) === 0)).toBe(true);
    const low = ops.groupedGemm(a, w, sizes);
    const ref = ops.groupedGemm(aValues, wValues, sizes);
    expect(low.output.dtype).toBe('f32');
    expect(Array.from(low.output.toArray())).toEqual(Array.from(ref.output.toArray()));
    const D = f32(uniform(rand, M * N), [M, N]);
    const g = low.backward(D), gRef = ref.backward(D);
    expect(g.da.dtype).toBe('f32');
    expect(Array.from(g.da.toArray())).toEqual(Array.from(gRef.da.toArray()));
    expect(Array.from(g.dw.toArray())).toEqual(Array.from(gRef.dw.toArray()));
    expect(() => ops.groupedGemm(a, wValues, sizes)).toThrow(DTypeError);
    expect(() => ops.groupedGemm(a, wValues, sizes)).toThrow(/^w must be a bf16 tensor, got f32/);
    expect(() => ops.groupedGemm(aValues, w, sizes)).toThrow(/^w must be a f32 tensor, got bf16/);
    expect(() => native.groupedGemm(a.handle, wValues.handle, sizes)).toThrow(/^w must be a bf16 tensor, got f32/);
  });
});

// ---- route --------------------------------------------------------------------------------------------

describe('ops.route (R1–R7 against the golden cases of §6)', () => {
  for (const file of ['softmax_top2', 'sigmoid_grouplimited_bias']) {
    test(`${file}: indices equal expect.indices, weights within 1e-5 (R1–R7)`, () => {
      const g = loadGolden(file);
      const config = JSON.parse(g.metadata.config) as MoEConfig;
      const bias = g.tensors['param.router.bias'];
      const r = ops.route(g.tensors['input.x'], g.tensors['param.router.weight'], config.router, bias ? { bias } : {});
      expect(values(r.indices)).toEqual(values(g.tensors['expect.indices']));
      const want = g.tensors['expect.weights'].toArray();
      const got = r.weights.toArray();
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-5);
      expect(values(r.keep)).toEqual(values(g.tensors['expect.keep']));
      expect(values(r.counts)).toEqual(values(g.tensors['expect.counts']));
      expect(values(r.accepted)).toEqual(values(g.tensors['expect.accepted']));
    });
  }

  test('the bias selects experts but never enters the weights (R4, R7)', () => {
    const g = loadGolden('sigmoid_grouplimited_bias');
    const config = JSON.parse(g.metadata.config) as MoEConfig;
    const x = g.tensors['input.x'], w = g.tensors['param.router.weight'];
    const E = w.shape[0];
    // A huge bias on expert 3 puts it first everywhere; its weight is still s·scale/Σs.
    const bias = f32(Array.from({ length: E }, (_, e) => (e === 3 ? 100 : 0)), [E]);
    const r = ops.route(x, w, config.router, { bias });
    const idx = r.indices.toArray();
    const k = config.router.topK;
    for (let t = 0; t < x.shape[0]; t++) expect(idx[t * k]).toBe(3);
    const noBias = ops.route(x, w, { ...config.router, bias: false });
    expect(values(noBias.indices)).not.toEqual(values(r.indices));
  });

  test('route leaves opts.load unchanged and is deterministic for a seed (R10, step 0)', () => {
    const rand = prng(31);
    const T = 16, H = 6, E = 8;
    const x = f32(uniform(rand, T * H), [T, H]), w = f32(uniform(rand, E * H), [E, H]);
    const load = f32(Array.from({ length: E }, (_, e) => (e + 1) / 36), [E]);
    const before = values(load);
    const router = { type: 'sampled' as const, topK: 2, normalize: true };
    const a = ops.route(x, w, router, { load, seed: 5 });
    const b = ops.route(x, w, router, { load, seed: 5 });
    expect(values(load)).toEqual(before);
    expect(values(a.indices)).toEqual(values(b.indices));
    expect(values(a.weights)).toEqual(values(b.weights));
  });

  test('modality groups restrict each token to its group (R2)', () => {
    const rand = prng(32);
    const T = 10, H = 4, E = 6;
    const x = f32(uniform(rand, T * H), [T, H]), w = f32(uniform(rand, E * H), [E, H]);
    const modality = i32(Array.from({ length: T }, (_, t) => t % 2), [T]);
    const r = ops.route(x, w, { topK: 2 }, { modality, experts: [{ count: 3, modality: 0 }, { count: 3, modality: 1 }] });
    const idx = r.indices.toArray();
    for (let t = 0; t < T; t++) for (let j = 0; j < 2; j++) expect(Math.floor(idx[t * 2 + j] / 3)).toBe(t % 2);
  });

  test('capacity drops slots in token order (C1, C2) and backward ignores dropped slots', () => {
    const T = 6, H = 2, E = 2;
    const x = f32([1, 0, 1, 0.1, 1, 0.2, 1, 0.3, 0, 1, 0.1, 1], [T, H]);
    const w = f32([1, 0, 0, 1], [E, H]);
    const r = ops.route(x, w, { topK: 1 }, { capacity: { factor: 0.5, policy: 'position' } });
    expect(values(r.indices)).toEqual([0, 0, 0, 0, 1, 1]);
    expect(values(r.keep)).toEqual([1, 1, 0, 0, 1, 1]); // C = ceil(0.5·6·1/2) = 2
    expect(values(r.counts)).toEqual([4, 2]);
    expect(values(r.accepted)).toEqual([2, 2]);
    const dWeights = f32([0, 0, 5, 5, 0, 0], [T, 1]);
    const g = r.backward(dWeights);
    expect(g.dx.toArray().every((v) => v === 0)).toBe(true);
  });

  const routeConfigs: { name: string; router: MoEConfig['router']; E: number }[] = [
    { name: 'softmax top-2 normalized', router: { topK: 2, normalize: true, scale: 1.5 }, E: 5 },
    { name: 'sigmoid group-limited', router: { topK: 2, score: 'sigmoid', normalize: true, groupLimited: { groups: 3, topGroups: 2 } }, E: 6 },
    { name: 'affinity (cosine, R8)', router: { type: 'affinity', topK: 2, temperature: 0.5 }, E: 4 },
  ];
  for (const { name, router, E } of routeConfigs) {
    test(`backward of ${name} routing weights matches finite differences (R1, R3, R7, R8)`, () => {
      const rand = prng(33 + E);
      const T = 4, H = 3, k = router.topK;
      const x = uniform(rand, T * H), w = uniform(rand, E * H), D = uniform(rand, T * k);
      const base = values(ops.route(f32(x, [T, H]), f32(w, [E, H]), router).indices);
      const objective = ([xv, wv]: Float32Array[]) => {
        const r = ops.route(f32(xv, [T, H]), f32(wv, [E, H]), router);
        expect(values(r.indices)).toEqual(base); // the perturbation must not change the selection
        return dot(r.weights.toArray(), D);
      };
      const g = ops.route(f32(x, [T, H]), f32(w, [E, H]), router).backward(f32(D, [T, k]));
      expect(relativeError(g.dx.toArray(), finiteDifference(objective, [x, w], 0, 1e-3))).toBeLessThan(2e-3);
      expect(relativeError(g.dWeight.toArray(), finiteDifference(objective, [x, w], 1, 1e-3))).toBeLessThan(2e-3);
    });
  }
});

// ---- losses ---------------------------------------------------------------------------------------

function softmaxRows(logits: Float32Array, T: number, E: number): Float32Array {
  const out = new Float32Array(T * E);
  for (let t = 0; t < T; t++) {
    const row = logits.subarray(t * E, (t + 1) * E);
    const m = Math.max(...row);
    const z = row.reduce((s, v) => s + Math.exp(v - m), 0);
    for (let e = 0; e < E; e++) out[t * E + e] = Math.exp(row[e] - m) / z;
  }
  return out;
}

/** ‖ŴaŴbᵀ − δ‖²_F over the row blocks [a0,a1) × [b0,b1) of normalised rows. */
function gramBlock(w: Float32Array, H: number, a0: number, a1: number, b0: number, b1: number, identity: boolean): number {
  const row = (e: number) => {
    const r = Array.from(w.subarray(e * H, (e + 1) * H));
    const n = Math.hypot(...r);
    return r.map((v) => v / n);
  };
  let s = 0;
  for (let i = a0; i < a1; i++)
    for (let j = b0; j < b1; j++) s += (dot(row(i), row(j)) - (identity && i === j ? 1 : 0)) ** 2;
  return s;
}

describe('losses (L1, L4, L5)', () => {
  test('loadBalance equals coeff·E·Σ f_i·P_i (L1), uniform routing gives coeff, tokens overrides T (L2)', () => {
    const rand = prng(41);
    const T = 7, E = 5, k = 2, coeff = 0.03;
    const probs = softmaxRows(uniform(rand, T * E, 2), T, E);
    const counts = [4, 0, 3, 5, 2];
    const P = (e: number) => Array.from({ length: T }, (_, t) => probs[t * E + e]).reduce((a, b) => a + b, 0) / T;
    const want = (tokens: number) => coeff * E * counts.reduce((s, c, e) => s + (c / (tokens * k)) * P(e), 0);
    expect(losses.loadBalance(f32(probs, [T, E]), i32(counts, [E]), { topK: k, coeff }).loss).toBeCloseTo(want(T), 7);
    expect(losses.loadBalance(f32(probs, [T, E]), i32(counts, [E]), { topK: k, coeff, tokens: 21 }).loss).toBeCloseTo(want(21), 7);
    const uniformProbs = f32(new Float32Array(4 * 4).fill(0.25), [4, 4]);
    expect(losses.loadBalance(uniformProbs, i32([2, 2, 2, 2], [4]), { topK: 2, coeff }).loss).toBeCloseTo(coeff, 7);
  });

  test('loadBalance gradient flows through P only and matches finite differences (L1)', () => {
    const rand = prng(42);
    const T = 4, E = 3, counts = i32([3, 1, 4], [E]);
    const probs = softmaxRows(uniform(rand, T * E), T, E);
    const objective = ([p]: Float32Array[]) => losses.loadBalance(f32(p, [T, E]), counts, { topK: 2, coeff: 0.1, tokens: 9 }).loss;
    const { dProbs } = losses.loadBalance(f32(probs, [T, E]), counts, { topK: 2, coeff: 0.1, tokens: 9 });
    expect(relativeError(dProbs.toArray(), finiteDifference(objective, [probs], 0, 1e-3))).toBeLessThan(1e-4);
  });

  test('zLoss equals coeff·mean_t lse_t² over the unmasked logits and matches finite differences (L4)', () => {
    const rand = prng(43);
    const T = 5, E = 4, coeff = 0.002;
    const logits = uniform(rand, T * E, 3);
    logits[1] = -Infinity; // masked (R2)
    logits[E + 2] = -Infinity;
    let want = 0;
    for (let t = 0; t < T; t++) {
      const row = Array.from(logits.subarray(t * E, (t + 1) * E)).filter((v) => v > -Infinity);
      const m = Math.max(...row);
      want += (m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0))) ** 2;
    }
    want *= coeff / T;
    const r = losses.zLoss(f32(logits, [T, E]), { coeff });
    expect(r.loss).toBeCloseTo(want, 9);
    const masked = (i: number) => logits[i] === -Infinity;
    const objective = ([l]: Float32Array[]) => losses.zLoss(f32(l, [T, E]), { coeff }).loss;
    const dl = r.dLogits.toArray();
    expect(dl[1]).toBe(0);
    expect(relativeError(dl, finiteDifference(objective, [logits], 0, 1e-3, masked))).toBeLessThan(1e-4);
  });

  test('routerOrthogonality all / perGroup / crossGroup equal their formulas and match finite differences (L5)', () => {
    const rand = prng(44);
    const E = 5, H = 4, coeff = 0.1, sizes = [2, 3];
    const w = uniform(rand, E * H);
    const wantAll = (coeff * gramBlock(w, H, 0, E, 0, E, true)) / (E * E);
    const wantPer = coeff * (gramBlock(w, H, 0, 2, 0, 2, true) / 4 + gramBlock(w, H, 2, 5, 2, 5, true) / 9);
    const wantCross = (coeff * gramBlock(w, H, 0, 2, 2, 5, false)) / 6;
    const cases = [
      { mode: 'all' as const, want: wantAll },
      { mode: 'perGroup' as const, want: wantPer },
      { mode: 'crossGroup' as const, want: wantCross },
    ];
    for (const { mode, want } of cases) {
      const opts = { coeff, mode, groupSizes: sizes };
      const r = losses.routerOrthogonality(f32(w, [E, H]), opts);
      expect(r.loss).toBeCloseTo(want, 6);
      const objective = ([wv]: Float32Array[]) => losses.routerOrthogonality(f32(wv, [E, H]), opts).loss;
      expect(relativeError(r.dWeight.toArray(), finiteDifference(objective, [w], 0, 1e-3))).toBeLessThan(1e-3);
    }
  });
});

// ---- AdamW ------------------------------------------------------------------------------------------

describe('AdamW', () => {
  test('three steps match a float64 reference of torch.optim.AdamW, updating the parameters in place', () => {
    const rand = prng(51);
    const shapes: Record<string, number[]> = { a: [3, 4], b: [5] };
    const params: Record<string, Tensor> = {};
    const grads: Record<string, Tensor> = {};
    const ref: Record<string, { p: number[]; m: number[]; v: number[] }> = {};
    for (const [name, shape] of Object.entries(shapes)) {
      const n = shape.reduce((x, y) => x * y, 1);
      const p = uniform(rand, n);
      params[name] = f32(p, shape);
      grads[name] = Tensor.zeros(shape);
      ref[name] = { p: Array.from(p), m: new Array(n).fill(0), v: new Array(n).fill(0) };
    }
    const lr = 0.01, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
    const opt = new AdamW({ parameters: () => params, grads: () => grads }, { lr, betas: [b1, b2], eps, weightDecay: wd });
    const liveViews = Object.fromEntries(Object.entries(params).map(([name, t]) => [name, t.view() as Float32Array]));
    for (let step = 1; step <= 3; step++) {
      for (const name of Object.keys(shapes)) {
        const g = uniform(rand, ref[name].p.length);
        (grads[name].view() as Float32Array).set(g);
        const r = ref[name];
        for (let i = 0; i < g.length; i++) {
          r.p[i] *= 1 - lr * wd;
          r.m[i] = b1 * r.m[i] + (1 - b1) * g[i];
          r.v[i] = b2 * r.v[i] + (1 - b2) * g[i] * g[i];
          const denom = Math.sqrt(r.v[i]) / Math.sqrt(1 - b2 ** step) + eps;
          r.p[i] -= (lr / (1 - b1 ** step)) * (r.m[i] / denom);
        }
      }
      opt.step();
      expect(opt.stepCount).toBe(step);
      for (const name of Object.keys(shapes)) {
        expect(relativeError(liveViews[name], ref[name].p)).toBeLessThan(1e-6); // zero-copy: the views see the update
        expect(relativeError(opt.moments(name)!.v.toArray(), ref[name].v)).toBeLessThan(1e-6);
      }
    }
    opt.dispose();
    expect(() => opt.step()).toThrow(ArgumentError);
  });
});

// ---- errors (DESIGN §4) ----------------------------------------------------------------------------

describe('bad arguments throw the typed error naming the argument (§4)', () => {
  const x = f32(new Float32Array(12), [4, 3]);
  const experts = i32([0, 1, 1, 0], [4, 1]);
  const cases: [string, () => unknown, new (...args: never[]) => Error, RegExp][] = [
    ['permute: x not a Tensor', () => ops.permute([1, 2] as unknown as Tensor, experts, 2), ArgumentError, /^x must be a f32 Tensor/],
    ['permute: x of dtype i32', () => ops.permute(experts, experts, 2), DTypeError, /^x must be a f32 tensor, got i32/],
    ['permute: experts rows ≠ T', () => ops.permute(x, i32([0, 1], [2, 1]), 2), ShapeError, /^experts has shape \[2, 1\]: dimension 0 must equal T = x.shape\[0\] = 4/],
    ['permute: expert index ≥ numExperts', () => ops.permute(x, i32([0, 1, 2, 0], [4, 1]), 2), ArgumentError, /^experts\[2, 0\] must be in \[-1, numExperts = 2\)/],
    ['permute: numExperts 0', () => ops.permute(x, experts, 0), ArgumentError, /^numExperts must be an integer/],
    ['permute backward: dOutput shape', () => ops.permute(x, experts, 2).backward(f32(new Float32Array(3), [1, 3])), ShapeError, /^dOutput has shape \[1, 3\]/],
    ['unpermute: rowToken ≥ tokens', () => ops.unpermute(x, i32([0, 1, 2, 5], [4]), null, 4), ArgumentError, /^rowToken\[3\] must be in \[0, tokens = 4\)/],
    ['unpermute: weights length', () => ops.unpermute(x, i32([0, 1, 2, 3], [4]), f32([1, 1], [2]), 4), ShapeError, /^weights has shape \[2\]/],
    ['groupedGemm: sizes do not sum to M', () => ops.groupedGemm(x, f32(new Float32Array(12), [2, 2, 3]), [1, 2]), ShapeError, /^groupSizes must sum to M = a.shape\[0\] = 4, got 3/],
    ['groupedGemm: negative group', () => ops.groupedGemm(x, f32(new Float32Array(12), [2, 2, 3]), [5, -1]), ArgumentError, /^groupSizes\[1\] must be an integer/],
    ['groupedGemm: K mismatch', () => ops.groupedGemm(x, f32(new Float32Array(8), [2, 2, 2]), [2, 2]), ShapeError, /^w has shape \[2, 2, 2\]: dimension 2 must equal K/],
    ['route: topK > E', () => ops.route(x, f32(new Float32Array(6), [2, 3]), { topK: 3 }), MoEConfigError, /router\.topK must be an integer in \[1, 2\]/],
    ['route: unknown router field', () => ops.route(x, f32(new Float32Array(6), [2, 3]), { topK: 1, topk: 2 } as never), MoEConfigError, /router\.topk is not a MoEConfig field \(did you mean topK\?\)/],
    ['route: expert-choice', () => ops.route(x, f32(new Float32Array(6), [2, 3]), { type: 'expert-choice', topK: 1 }), ArgumentError, /use MoELayer/],
    ['route: bias missing', () => ops.route(x, f32(new Float32Array(6), [2, 3]), { topK: 1, bias: true }), ArgumentError, /^opts\.bias must be an f32 Tensor \[E\] when router\.bias is true/],
    ['route: weight H mismatch', () => ops.route(x, f32(new Float32Array(8), [2, 4]), { topK: 1 }), ShapeError, /^weight has shape \[2, 4\]: dimension 1 must equal H = x.shape\[1\] = 3/],
    ['route: unknown option', () => ops.route(x, f32(new Float32Array(6), [2, 3]), { topK: 1 }, { sead: 1 } as never), ArgumentError, /^opts\.sead is not an option/],
    ['loadBalance: counts f32', () => losses.loadBalance(x, x, { topK: 1, coeff: 1 }), DTypeError, /^counts must be a i32 tensor, got f32/],
    ['loadBalance: negative count', () => losses.loadBalance(x, i32([1, -1, 0], [3]), { topK: 1, coeff: 1 }), ArgumentError, /^counts\[1\] must be >= 0/],
    ['zLoss: coeff NaN', () => losses.zLoss(x, { coeff: NaN }), ArgumentError, /^opts\.coeff must be a finite number/],
    ['orthogonality: crossGroup with one group', () => losses.routerOrthogonality(x, { coeff: 1, mode: 'crossGroup' }), ArgumentError, /^opts\.groupSizes must list at least two groups/],
    ['orthogonality: bad mode', () => losses.routerOrthogonality(x, { coeff: 1, mode: 'cross' as never }), ArgumentError, /^opts\.mode must be one of/],
    ['AdamW: negative lr', () => new AdamW({ parameters: () => ({}), grads: () => ({}) }, { lr: -1 }), ArgumentError, /^opts\.lr must be a finite number >= 0/],
    ['AdamW: beta1 = 1', () => new AdamW({ parameters: () => ({}), grads: () => ({}) }, { betas: [1, 0.9] }), ArgumentError, /^opts\.betas\[0\] must be a number in \[0, 1\)/],
    ['AdamW: missing gradient', () => new AdamW({ parameters: () => ({ w: x }), grads: () => ({}) }).step(), ArgumentError, /^grads\(\) has no entry for parameter "w"/],
    ['AdamW: gradient shape', () => new AdamW({ parameters: () => ({ w: x }), grads: () => ({ w: f32([1], [1, 1]) }) }).step(), ShapeError, /^grads\(\)\["w"\] has shape \[1, 1\]/],
  ];
  for (const [name, call, cls, message] of cases) {
    test(name, () => {
      expect(call).toThrow(cls);
      expect(call).toThrow(message);
    });
  }

  test('a disposed input throws DisposedError', () => {
    const t = f32(new Float32Array(6), [2, 3]);
    t.dispose();
    expect(() => ops.permute(t, i32([0, 0], [2, 1]), 1)).toThrow(DisposedError);
  });
});

describe('native code validates again when the facade is bypassed (§4: nothing reachable from JS may crash)', () => {
  const x = f32(new Float32Array(12), [4, 3]);
  const cases: [string, () => unknown, new (...args: never[]) => Error, RegExp][] = [
    ['permute: expert out of range', () => native.permute(x.handle, i32([0, 9, 0, 0], [4, 1]).handle, 2), ArgumentError, /^experts\[1, 0\] must be in \[-1, numExperts = 2\)/],
    ['permuteBackward: rowToken out of range', () => native.permuteBackward(x.handle, i32([0, 1, 2, 7], [4]).handle, 4), ArgumentError, /rowToken\[3\] must be in \[0, T = 4\)/],
    ['unpermute: weights of dtype i32', () => native.unpermute(x.handle, i32([0, 1, 2, 3], [4]).handle, i32([1, 1, 1, 1], [4]).handle, 4), DTypeError, /^weights must be a f32 tensor/],
    ['groupedGemm: sizes mismatch', () => native.groupedGemm(x.handle, f32(new Float32Array(6), [1, 2, 3]).handle, [3]), ShapeError, /^groupSizes must sum to M/],
    ['groupedGemm: not a tensor', () => native.groupedGemm({} as never, x.handle, [4]), ArgumentError, /^a must be a native tensor/],
    ['adamwStep: m shape', () => native.adamwStep(x.handle, x.handle, f32([0], [1, 1]).handle, x.handle, { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1, weightDecay: 0 }, 1, 'cpu'), ShapeError, /^m has shape \[1, 1\]/],
    ['adamwStep: beta2 ≥ 1', () => native.adamwStep(x.handle, x.handle, x.handle, x.handle, { lr: 1, beta1: 0.9, beta2: 1, eps: 1, weightDecay: 0 }, 1, 'cpu'), ArgumentError, /beta2/],
    ['zLoss: NaN logit', () => native.zLoss(f32([0, NaN], [1, 2]).handle, 1), ArgumentError, /^logits\[0, 1\] must be finite or -Infinity/],
    ['route: expert-choice spec', () => native.route(x.handle, f32(new Float32Array(6), [2, 3]).handle, flatSpec(3, 2, { type: 2 }), { bias: null, load: null, modality: null }), ArgumentError, /use MoELayer/],
    ['route: spec hidden ≠ H', () => native.route(x.handle, f32(new Float32Array(6), [2, 3]).handle, flatSpec(5, 2, {}), { bias: null, load: null, modality: null }), ShapeError, /^x has shape \[4, 3\]: dimension 1 must equal spec.hidden = 5/],
    ['routeBackward: dWeights shape', () => native.routeBackward(x.handle, f32(new Float32Array(6), [2, 3]).handle, flatSpec(3, 2, {}), { bias: null, load: null, modality: null }, f32([0], [1, 1]).handle), ShapeError, /^dWeights has shape \[1, 1\]/],
  ];
  for (const [name, call, cls, message] of cases) {
    test(name, () => {
      expect(call).toThrow(cls);
      expect(call).toThrow(message);
    });
  }
});

/** A flat router spec (native/addon/router_spec.h) of one group of E experts, top-1. */
function flatSpec(hidden: number, E: number, router: Record<string, unknown>): object {
  return {
    hidden,
    groups: [{ count: E, modality: -1 }],
    router: {
      type: 0, topK: 1, score: 0, normalize: false, scale: 1, limitGroups: 0, limitTopGroups: 0, useBias: false,
      biasUpdateRate: 0, temperature: 1, minAffinity: null, loadPenalty: 1, loadDecay: 0.1, capacityFactor: 0,
      policy: 0, balanceCoeff: 0, scope: 0, zCoeff: 0, orthCoeff: 0, orthMode: 0, seed: 0, ...router,
    },
  };
}
