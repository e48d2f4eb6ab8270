/**
 * AdamW (Loshchilov & Hutter) in the order of torch.optim.AdamW, so results match PyTorch step for
 * step (native/cpu/adamw.h):
 *   p ← p·(1 − lr·weightDecay);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − (lr/(1−β1ᵗ)) · m / (√v/√(1−β2ᵗ) + eps)
 * The update is written straight into each parameter's storage (zero-copy), so a layer's
 * `parameters()` see it at once. m and v are f32 tensors created at the first step.
 */
import { ArgumentError, ShapeError } from './errors';
import { native } from './native';
import { Tensor } from './tensor';
import { checkTensor } from './tensor-checks';
import { checkObject, describe } from './validate';

/** What AdamW trains: every parameter needs a gradient of the same shape under the same name. */
export interface Trainable {
  parameters(): Record<string, Tensor>;
  grads(): Record<string, Tensor>;
}

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

function checkRange(value: unknown, name: string, fallback: number, ok: (v: number) => boolean, expected: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || !ok(value)) throw new ArgumentError(`${name} must be ${expected}, got ${describe(value)}`);
  return value;
}

export class AdamW {
  readonly lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  #target: Trainable;
  #state = new Map<string, { m: Tensor; v: Tensor }>();
  #step = 0;
  #disposed = false;

  constructor(target: Trainable, opts: AdamWOptions = {}) {
    const t = checkObject(target, 'target');
    if (typeof t.parameters !== 'function' || typeof t.grads !== 'function') {
      throw new ArgumentError(`target must have parameters() and grads() methods (a MoELayer, for example), got ${describe(target)}`);
    }
    const o = checkObject(opts, 'opts');
    for (const key of Object.keys(o)) {
      if (!['lr', 'betas', 'eps', 'weightDecay'].includes(key)) throw new ArgumentError(`opts.${key} is not an option; options: lr, betas, eps, weightDecay`);
    }
    this.lr = checkRange(o.lr, 'opts.lr', 1e-3, (v) => v >= 0, 'a finite number >= 0');
    if (o.betas !== undefined && (!Array.isArray(o.betas) || o.betas.length !== 2)) {
      throw new ArgumentError(`opts.betas must be an array [beta1, beta2], got ${describe(o.betas)}`);
    }
    const betas = (o.betas as unknown[] | undefined) ?? [0.9, 0.999];
    const inUnit = (v: number) => v >= 0 && v < 1;
    this.betas = [
      checkRange(betas[0], 'opts.betas[0]', 0.9, inUnit, 'a number in [0, 1)'),
      checkRange(betas[1], 'opts.betas[1]', 0.999, inUnit, 'a number in [0, 1)'),
    ];
    this.eps = checkRange(o.eps, 'opts.eps', 1e-8, (v) => v > 0, 'a finite number > 0');
    this.weightDecay = checkRange(o.weightDecay, 'opts.weightDecay', 0.01, (v) => v >= 0, 'a finite number >= 0');
    this.#target = target;
  }

  /** Steps taken so far (t of the bias corrections is stepCount after a step). */
  get stepCount(): number {
    return this.#step;
  }

  /** One update of every parameter from its gradient, in place. Gradients are left as they are. */
  step(): void {
    if (this.#disposed) throw new ArgumentError('step(): this AdamW has been disposed');
    const params = this.#target.parameters();
    const grads = this.#target.grads();
    // Check everything before the first write, so a bad entry leaves every parameter unchanged.
    const entries = Object.entries(params).map(([name, value]) => {
      const param = checkTensor(value, `parameters()["${name}"]`, 'f32', (value as Tensor)?.shape?.length ?? 0);
      if (!Object.hasOwn(grads, name)) throw new ArgumentError(`grads() has no entry for parameter "${name}"`);
      const grad = checkTensor(grads[name], `grads()["${name}"]`, 'f32', param.shape.length);
      if (grad.shape.some((d, i) => d !== param.shape[i])) {
        throw new ShapeError(`grads()["${name}"] has shape [${grad.shape.join(', ')}], expected the shape of the parameter [${param.shape.join(', ')}]`);
      }
      const state = this.#state.get(name);
      if (state && state.m.shape.some((d, i) => d !== param.shape[i])) {
        throw new ShapeError(`parameters()["${name}"] changed shape since the last step: [${state.m.shape.join(', ')}] → [${param.shape.join(', ')}]`);
      }
      return { name, param, grad };
    });
    const step = this.#step + 1;
    const config = { lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay };
    for (const { name, param, grad } of entries) {
      let state = this.#state.get(name);
      if (!state) {
        state = { m: Tensor.zeros([...param.shape]), v: Tensor.zeros([...param.shape]) };
        this.#state.set(name, state);
      }
      native.adamwStep(param.handle, grad.handle, state.m.handle, state.v.handle, config, step);
    }
    this.#step = step;
  }

  /** The moment estimates of one parameter (live tensors), or undefined before its first step. */
  moments(name: string): { m: Tensor; v: Tensor } | undefined {
    return this.#state.get(name);
  }

  /** Frees m and v; the optimizer cannot step afterwards. */
  dispose(): void {
    for (const { m, v } of this.#state.values()) {
      m.dispose();
      v.dispose();
    }
    this.#state.clear();
    this.#disposed = true;
  }
}
