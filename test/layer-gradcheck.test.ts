/**
 * Finite-difference checks of layer.backward (objective Σ y·dy + aux, DESIGN §2) on small shapes,
 * for every routing type, modality isolation (R2), capacity dropping (C2/C3/C5) and every loss.
 * The checker perturbs one entry at a time with evaluation forwards (training: false, so no state
 * moves), accumulates the objective in float64, and skips coordinates whose perturbation changes a
 * routing decision (top-k and capacity are piecewise constant there). Runs on every device
 * (test/helpers/devices.ts).
 */
import { MoEConfig, MoELayer, Tensor } from '../lib';
import { describeOnDevices } from './helpers/devices';
import { relativeError } from './helpers/golden';
import { decisions, objective } from './helpers/layer';
import { uniformTensor } from './helpers/random';

const T = 7;
const H = 5;
const EPS = 2e-3;
/** f32 forwards with an f64 objective: roundoff ≈ 1e-7·|J|/EPS per coordinate ≈ 1e-4 relative. */
const TOL = 5e-3;

const base = { hidden: H, activation: 'swiglu' as const, seed: 11 };
const cases: [string, MoEConfig, { modality?: number[]; seqLens?: number[] }][] = [
  ['softmax top-2, balance + z + orthogonality', { ...base, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], router: { topK: 2 }, losses: { balance: { coeff: 0.1 }, z: { coeff: 0.05 }, orthogonality: { coeff: 0.1 } } }, {}],
  ['modality isolation, shared expert, gelu, cross-group orthogonality (R2, X2, L5)', {
    ...base, activation: 'gelu', experts: [{ name: 'text', count: 3, ffnHidden: 4, modality: 0 }, { name: 'vision', count: 2, ffnHidden: 2, modality: 1 }],
    sharedExperts: { count: 1, ffnHidden: 3 }, router: { topK: 2, normalize: true }, losses: { balance: { coeff: 0.1 }, orthogonality: { coeff: 0.1, mode: 'crossGroup' } },
  }, { modality: [0, 1, 0, 0, 1, 1, 0] }],
  ['capacity dropping by position, relu (C1, C2)', { ...base, activation: 'relu', experts: [{ name: 'e', count: 4, ffnHidden: 3 }], router: { topK: 2 }, capacity: { factor: 0.5 }, losses: { balance: { coeff: 0.1 } } }, {}],
  ['capacity dropping by score (C3)', { ...base, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], router: { topK: 2 }, capacity: { factor: 0.6, policy: 'score' }, losses: { z: { coeff: 0.05 } } }, {}],
  ['capacity reroute (C5)', { ...base, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], router: { topK: 2, normalize: true }, capacity: { factor: 0.6, policy: 'reroute' }, losses: { balance: { coeff: 0.1 } } }, {}],
  ['sigmoid, bias, group-limited, sequence balance (R3–R5, L3)', {
    ...base, experts: [{ name: 'e', count: 8, ffnHidden: 2 }],
    router: { topK: 2, score: 'sigmoid', normalize: true, scale: 2, bias: true, groupLimited: { groups: 4, topGroups: 2 } }, losses: { balance: { coeff: 0.1, scope: 'sequence' } },
  }, { seqLens: [3, 4] }],
  ['global balance window (L2)', { ...base, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], router: { topK: 2 }, losses: { balance: { coeff: 0.2, scope: 'global' } } }, {}],
  ['affinity with minAffinity (R8, C4)', { ...base, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], router: { type: 'affinity', topK: 2, temperature: 0.5, minAffinity: -0.2 }, losses: { orthogonality: { coeff: 0.1, mode: 'perGroup' } } }, {}],
  ['expert choice (R9)', { ...base, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], router: { type: 'expert-choice', topK: 2 }, capacity: { factor: 1 }, losses: { z: { coeff: 0.05 } } }, {}],
  ['load-aware sampling (R10)', { ...base, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], router: { type: 'sampled', topK: 2, normalize: true }, losses: { balance: { coeff: 0.1 } } }, {}],
];

describeOnDevices((device) => test.each(cases)('backward equals finite differences: %s', (_name, config, inputs) => {
  const layer = new MoELayer({ ...config, device });
  const x = uniformTensor([T, H], 3).to(device);
  const dy = uniformTensor([T, H], 5).toArray() as Float32Array;
  const opts = {
    modality: inputs.modality ? Tensor.from(inputs.modality, [T], { dtype: 'i32', device }) : undefined,
    seqLens: inputs.seqLens,
  };
  if (config.losses?.balance?.scope === 'global') layer.forward(uniformTensor([T, H], 9).to(device), opts); // an earlier micro-batch in the window

  const evaluate = () => layer.forward(x, { ...opts, training: false });
  const reference = decisions(evaluate());
  let skipped = 0;
  let checked = 0;
  // A tensor's values on the host, written back to it after each change (any device).
  const editable = (t: Tensor) => {
    const values = t.toArray() as Float32Array;
    return { values, set: (i: number, v: number) => { values[i] = v; t.write(values); } };
  };
  const numeric = (e: ReturnType<typeof editable>, index: number): number | undefined => {
    const saved = e.values[index];
    e.set(index, saved + EPS);
    const plus = evaluate();
    e.set(index, saved - EPS);
    const minus = evaluate();
    e.set(index, saved);
    if (decisions(plus) !== reference || decisions(minus) !== reference) {
      skipped++;
      return undefined;
    }
    checked++;
    return (objective(plus, dy) - objective(minus, dy)) / (2 * EPS);
  };

  // numeric gradients first (evaluation forwards leave the step, window and load alone) …
  const xValues = editable(x);
  const numericX = Array.from(xValues.values, (_, i) => numeric(xValues, i));
  const params = layer.parameters();
  const numericParams: Record<string, (number | undefined)[]> = {};
  for (const [name, p] of Object.entries(params)) {
    const values = editable(p);
    const stride = Math.max(1, Math.floor(values.values.length / 12));
    numericParams[name] = Array.from(values.values, (_, i) => (i % stride === 0 ? numeric(values, i) : undefined));
  }
  // … then the analytic ones from one training forward and backward
  layer.zeroGrad();
  expect(decisions(layer.forward(x, opts))).toBe(reference);
  const { dx } = layer.backward(Tensor.from(dy, [T, H], { device }));

  const compare = (analytic: ArrayLike<number>, num: (number | undefined)[], what: string) => {
    const idx = num.map((v, i) => (v === undefined ? -1 : i)).filter((i) => i >= 0);
    const got = idx.map((i) => analytic[i]);
    const want = idx.map((i) => num[i] as number);
    const err = relativeError(got, want);
    if (!(err < TOL)) throw new Error(`${what}: relative error ${err} (analytic ${got.slice(0, 4)} vs numeric ${want.slice(0, 4)})`);
  };
  compare(dx.toArray(), numericX, 'dx');
  const grads = layer.grads();
  for (const name of Object.keys(params)) compare(grads[name].toArray(), numericParams[name], `grad ${name}`);
  expect(checked).toBeGreaterThan(4 * skipped);
}));
