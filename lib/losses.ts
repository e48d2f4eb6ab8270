/**
 * losses (DESIGN §3 L1, L4, L5): the router's auxiliary losses as pure functions. Each returns the
 * value (coefficient included) and its gradient with respect to the tensor input — the backward is
 * computed with the value. Arithmetic is float64 in native/cpu/losses.h. Tensors may be on any
 * device, all on one (DeviceError naming the first on another); the gradient is returned on it and
 * the loss as a number. On cuda there is no device kernel yet: the inputs are copied down (waiting
 * for them), and the gradient is copied up.
 */
import { ArgumentError } from './errors';
import { native } from './native';
import { Tensor } from './tensor';
import { checkDim, checkSameDevice, checkTensor, hostValues } from './tensor-checks';
import { checkFiniteNumber, checkInteger, checkKeys, checkObject, checkSizes, describe } from './validate';

export interface LoadBalanceOptions {
  /** k of the top-k selection that produced `counts`. */
  topK: number;
  coeff: number;
  /** Tokens the counts were taken over (L2 global: the window total); default T = probs.shape[0]. */
  tokens?: number;
}

/**
 * L1 (Switch / Megatron): B = coeff · E · Σ_i f_i · P_i with f_i = counts_i / (tokens · topK) and
 * P_i = mean_t probs[t,i]. probs f32 [T,E] (s̃), counts i32 [E]. f is a constant, so
 * dProbs[t,i] = coeff · E · f_i / T. Uniform routing gives coeff.
 */
function loadBalance(probs: Tensor, counts: Tensor, opts: LoadBalanceOptions): { loss: number; dProbs: Tensor } {
  const p = checkTensor(probs, 'probs', 'f32', 2);
  const [T, E] = p.shape;
  const c = checkTensor(counts, 'counts', 'i32', 1);
  checkDim(c, 'counts', 0, E, 'E = probs.shape[1]');
  checkSameDevice(['probs', p], ['counts', c]);
  const o = checkObject(opts, 'opts');
  checkKeys(o, 'opts', ['topK', 'coeff', 'tokens']);
  const topK = checkInteger(o.topK, 'opts.topK', 1);
  const coeff = checkFiniteNumber(o.coeff, 'opts.coeff');
  const tokens = o.tokens === undefined ? T : checkFiniteNumber(o.tokens, 'opts.tokens');
  if (tokens < 0) throw new ArgumentError(`opts.tokens must be a number >= 0, got ${describe(o.tokens)}`);
  hostValues(c).forEach((v, i) => {
    if (v < 0) throw new ArgumentError(`counts[${i}] must be >= 0, got ${v}`);
  });
  const r = native.loadBalance(p.handle, c.handle, topK, coeff, tokens);
  return { loss: r.loss, dProbs: Tensor.wrap(r.dProbs) };
}

/**
 * L4 (ST-MoE router z-loss): Z = coeff · mean_t (log Σ_e exp logits[t,e])². logits f32 [T,E]; an
 * entry of -Infinity is masked out (R2). dLogits[t,e] = coeff · 2 · lse_t · softmax_t[e] / T.
 */
function zLoss(logits: Tensor, opts: { coeff: number }): { loss: number; dLogits: Tensor } {
  const l = checkTensor(logits, 'logits', 'f32', 2);
  const o = checkObject(opts, 'opts');
  checkKeys(o, 'opts', ['coeff']);
  const coeff = checkFiniteNumber(o.coeff, 'opts.coeff');
  const E = l.shape[1];
  hostValues(l).forEach((v, i) => {
    if (Number.isNaN(v) || v === Infinity) {
      throw new ArgumentError(`logits[${Math.floor(i / E)}, ${i % E}] must be finite or -Infinity (masked), got ${v}`);
    }
  });
  const r = native.zLoss(l.handle, coeff);
  return { loss: r.loss, dLogits: Tensor.wrap(r.dLogits) };
}

export type OrthogonalityMode = 'all' | 'perGroup' | 'crossGroup';
const ORTH_MODES: readonly OrthogonalityMode[] = ['all', 'perGroup', 'crossGroup'];

export interface OrthogonalityOptions {
  coeff: number;
  mode?: OrthogonalityMode;
  /** Experts per group, router order, summing to E; default one group of all E. */
  groupSizes?: number[];
}

/**
 * L5 (ERNIE 4.5) on weight f32 [E,H] with rows ŵ = w/‖w‖: `all` coeff·‖ŴŴᵀ−I‖²_F/E²;
 * `perGroup` Σ_g of the same within group g; `crossGroup` coeff·Σ_{a<b} ‖Ŵ_aŴ_bᵀ‖²_F/(E_a·E_b).
 * A zero row is left out (gradient 0).
 */
function routerOrthogonality(weight: Tensor, opts: OrthogonalityOptions): { loss: number; dWeight: Tensor } {
  const w = checkTensor(weight, 'weight', 'f32', 2);
  const E = w.shape[0];
  const o = checkObject(opts, 'opts');
  checkKeys(o, 'opts', ['coeff', 'mode', 'groupSizes']);
  const coeff = checkFiniteNumber(o.coeff, 'opts.coeff');
  const mode = o.mode === undefined ? 'all' : (o.mode as OrthogonalityMode);
  if (!ORTH_MODES.includes(mode)) throw new ArgumentError(`opts.mode must be one of 'all', 'perGroup', 'crossGroup', got ${describe(o.mode)}`);
  const groupSizes = o.groupSizes === undefined ? [E] : checkSizes(o.groupSizes, 'opts.groupSizes', null, 1, E, 'E = weight.shape[0]');
  if (groupSizes.length === 0) throw new ArgumentError('opts.groupSizes must list at least one group');
  if (mode === 'crossGroup' && groupSizes.length < 2) {
    throw new ArgumentError(`opts.groupSizes must list at least two groups for mode 'crossGroup', got ${groupSizes.length}`);
  }
  const r = native.routerOrthogonality(w.handle, coeff, ORTH_MODES.indexOf(mode), groupSizes);
  return { loss: r.loss, dWeight: Tensor.wrap(r.dWeight) };
}

export const losses = { loadBalance, zLoss, routerOrthogonality };
