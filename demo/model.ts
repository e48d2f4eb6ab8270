/**
 * The demo's model: two residual MoE layers and a linear classifier head,
 *   h1 = x + moe1(x);  h2 = h1 + moe2(h1);  logits = h2·Wᵀ (W [CLASSES, HIDDEN]);  cross-entropy.
 * Backward is written by hand through the head and the residuals (dh1 = dh2 + dx2); each MoE
 * layer's backward adds its own aux-loss gradients. The model is a Trainable (parameters() and
 * grads() under prefixed names), so one AdamW updates the layers and the head together.
 * Gradients accumulate over the micro-batches of a window: zeroGrad() opens it, trainStep() adds
 * one micro-batch, and the caller steps the optimiser and closes the layers' windows (endStep()).
 */
import { ExpertStats, MoELayer, MoEOutput, Tensor, Trainable } from '../lib';
import { CLASSES, HIDDEN } from './data';

export const EXPERTS = 8;
export const TOP_K = 2;

/** Where the balance loss counts expert load: per micro-batch (L1) or over the window (L2). */
export type BalanceScope = 'micro' | 'global';

/** What one layer reports for a training step. */
export interface LayerReport {
  aux: number;
  balance: number;
  z: number;
  stats: ExpertStats;
}

export interface StepReport {
  /** Mean cross-entropy of the batch (aux losses not included). */
  loss: number;
  accuracy: number;
  layers: [LayerReport, LayerReport];
}

/** An evaluation forward: loss, accuracy, each layer's top-k experts [T·k] and stats. */
export interface EvalReport {
  loss: number;
  correct: number;
  experts: [Int32Array, Int32Array];
  stats: [ExpertStats, ExpertStats];
}

function moeLayer(seed: number, scope: BalanceScope, balanceCoeff: number): MoELayer {
  return new MoELayer({
    hidden: HIDDEN,
    experts: [{ name: 'ffn', count: EXPERTS, ffnHidden: 64 }],
    activation: 'swiglu',
    router: { topK: TOP_K, score: 'softmax' },
    losses: { balance: { coeff: balanceCoeff, scope }, z: { coeff: 0.001 } },
    seed,
  });
}

/** Frees every tensor of a forward's output except y, which the caller still reads. */
function releaseRouting(out: MoEOutput): void {
  const { indices, weights, keep, assignments } = out.routing;
  for (const t of [indices, weights, keep, assignments.token, assignments.expert, assignments.weight]) t.dispose();
}

/** a + b as a new [T, HIDDEN] tensor. */
function add(a: Float32Array, b: Float32Array): Tensor {
  const sum = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) sum[i] = a[i] + b[i];
  return Tensor.from(sum, [a.length / HIDDEN, HIDDEN]);
}

function layerReport(out: MoEOutput): LayerReport {
  return { aux: out.aux, balance: out.losses.balance ?? 0, z: out.losses.z ?? 0, stats: out.stats };
}

export class MoEClassifier implements Trainable {
  readonly moe1: MoELayer;
  readonly moe2: MoELayer;
  readonly head: Tensor;
  readonly headGrad = Tensor.zeros([CLASSES, HIDDEN]);

  constructor(seed: number, scope: BalanceScope, balanceCoeff: number) {
    this.moe1 = moeLayer(seed, scope, balanceCoeff);
    this.moe2 = moeLayer(seed + 1, scope, balanceCoeff);
    this.head = Tensor.randn([CLASSES, HIDDEN], { seed: seed + 2, std: 1 / Math.sqrt(HIDDEN) });
  }

  parameters(): Record<string, Tensor> {
    return { ...prefixed('moe1', this.moe1.parameters()), ...prefixed('moe2', this.moe2.parameters()), 'head.weight': this.head };
  }

  grads(): Record<string, Tensor> {
    return { ...prefixed('moe1', this.moe1.grads()), ...prefixed('moe2', this.moe2.grads()), 'head.weight': this.headGrad };
  }

  /** Opens a gradient-accumulation window: every gradient to 0. */
  zeroGrad(): void {
    this.moe1.zeroGrad();
    this.moe2.zeroGrad();
    this.headGrad.view().fill(0);
  }

  /**
   * Forward and backward of one micro-batch; its gradients (of the mean cross-entropy plus the
   * aux losses) add into grads(). Over a window the optimiser sees their sum: AdamW is nearly
   * invariant to that scale, and the aux losses keep the weight they have in one micro-batch.
   */
  trainStep(x: Float32Array, labels: Int32Array): StepReport {
    const T = labels.length;
    const input = Tensor.from(x, [T, HIDDEN]);
    const out1 = this.moe1.forward(input);
    const h1 = add(x, out1.y.view() as Float32Array);
    const out2 = this.moe2.forward(h1);
    const h2 = add(h1.view() as Float32Array, out2.y.view() as Float32Array);
    const h2Values = h2.view() as Float32Array;
    const { loss, correct, dlogits } = crossEntropy(this.#logits(h2Values, T), labels);

    // Head: dW = dlogitsᵀ·h2, dh2 = dlogits·W.
    const W = this.head.view() as Float32Array;
    const dW = this.headGrad.view() as Float32Array;
    const dh2 = new Float32Array(T * HIDDEN);
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < CLASSES; c++) {
        const g = dlogits[t * CLASSES + c];
        for (let h = 0; h < HIDDEN; h++) {
          dW[c * HIDDEN + h] += g * h2Values[t * HIDDEN + h];
          dh2[t * HIDDEN + h] += g * W[c * HIDDEN + h];
        }
      }
    }
    const dh2Tensor = Tensor.from(dh2, [T, HIDDEN]);
    const { dx: dx2 } = this.moe2.backward(dh2Tensor);
    const dh1 = add(dh2, dx2.view() as Float32Array);
    const { dx: dx1 } = this.moe1.backward(dh1);

    const report: StepReport = { loss, accuracy: correct / T, layers: [layerReport(out1), layerReport(out2)] };
    for (const out of [out1, out2]) releaseRouting(out);
    for (const t of [input, out1.y, h1, out2.y, h2, dh2Tensor, dx2, dh1, dx1]) t.dispose();
    return report;
  }

  /** Evaluation forward (no balance window, no backward) of one batch. */
  evaluate(x: Float32Array, labels: Int32Array): EvalReport {
    const T = labels.length;
    const input = Tensor.from(x, [T, HIDDEN]);
    const out1 = this.moe1.forward(input, { training: false });
    const h1 = add(x, out1.y.view() as Float32Array);
    const out2 = this.moe2.forward(h1, { training: false });
    const h2 = add(h1.view() as Float32Array, out2.y.view() as Float32Array);
    const { loss, correct } = crossEntropy(this.#logits(h2.view() as Float32Array, T), labels);
    const report: EvalReport = {
      loss,
      correct,
      experts: [out1.routing.indices.toArray() as Int32Array, out2.routing.indices.toArray() as Int32Array],
      stats: [out1.stats, out2.stats],
    };
    for (const out of [out1, out2]) releaseRouting(out);
    for (const t of [input, out1.y, h1, out2.y, h2]) t.dispose();
    return report;
  }

  /** h [T, HIDDEN] · Wᵀ → logits [T, CLASSES]. */
  #logits(h: Float32Array, T: number): Float32Array {
    const W = this.head.view() as Float32Array;
    const logits = new Float32Array(T * CLASSES);
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < CLASSES; c++) {
        let sum = 0;
        for (let k = 0; k < HIDDEN; k++) sum += h[t * HIDDEN + k] * W[c * HIDDEN + k];
        logits[t * CLASSES + c] = sum;
      }
    }
    return logits;
  }
}

function prefixed(prefix: string, tensors: Record<string, Tensor>): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(tensors).map(([name, t]) => [`${prefix}.${name}`, t]));
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Mean softmax cross-entropy over the rows and its gradient d(mean)/dlogits = (softmax − onehot)/T. */
function crossEntropy(logits: Float32Array, labels: Int32Array): { loss: number; correct: number; dlogits: Float32Array } {
  const T = labels.length;
  const dlogits = new Float32Array(logits.length);
  let loss = 0;
  let correct = 0;
  for (let t = 0; t < T; t++) {
    const row = logits.subarray(t * CLASSES, (t + 1) * CLASSES);
    const best = argmax(row);
    let sum = 0;
    for (let c = 0; c < CLASSES; c++) sum += Math.exp(row[c] - row[best]);
    loss += Math.log(sum) + row[best] - row[labels[t]];
    if (best === labels[t]) correct++;
    for (let c = 0; c < CLASSES; c++) dlogits[t * CLASSES + c] = (Math.exp(row[c] - row[best]) / sum - (c === labels[t] ? 1 : 0)) / T;
  }
  return { loss: loss / T, correct, dlogits };
}
