/**
 * AdamW (Loshchilov & Hutter) in the order of torch.optim.AdamW, so results match PyTorch step for
 * step (native/cpu/adamw.h):
 *   p ← p·(1 − lr·weightDecay);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − (lr/(1−β1ᵗ)) · m / (√v/√(1−β2ᵗ) + eps)
 * The update is written straight into each parameter's storage (zero-copy), so a layer's
 * `parameters()` see it at once. m and v are f32 tensors created at the first step on their
 * parameter's device. On a cuda device the step runs the kernel of native/cuda/adamw.h on the
 * device's memory: it copies nothing between host and device and does not wait.
 *
 * Checkpoints: `stateDict()` holds `step` (i32 [1]) and `m.<name>`, `v.<name>` per parameter, ready
 * for saveSafetensors; `loadStateDict()` checks all of it before replacing anything, so a resumed
 * run continues bit for bit.
 */
import { DeviceSpec } from './devices';
import { ArgumentError, DeviceError, DTypeError, ShapeError } from './errors';
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
    const params = checkObject(this.#target.parameters(), 'target.parameters()');
    const grads = checkObject(this.#target.grads(), 'target.grads()');
    // Check everything before the first write, so a bad entry leaves every parameter unchanged.
    const entries = Object.entries(params).map(([name, value]) => {
      const param = checkTensor(value, `parameters()["${name}"]`, 'f32', (value as Tensor)?.shape?.length ?? 0);
      if (!Object.hasOwn(grads, name)) throw new ArgumentError(`grads() has no entry for parameter "${name}"`);
      const grad = checkTensor(grads[name], `grads()["${name}"]`, 'f32', param.shape.length);
      if (grad.device !== param.device) throw new DeviceError(`grads()["${name}"] is on ${grad.device}, its parameter on ${param.device}`);
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
        state = { m: Tensor.zeros([...param.shape], { device: param.device as DeviceSpec }), v: Tensor.zeros([...param.shape], { device: param.device as DeviceSpec }) };
        this.#state.set(name, state);
      }
      native.adamwStep(param.handle, grad.handle, state.m.handle, state.v.handle, config, step, param.device);
    }
    this.#step = step;
  }

  /** The moment estimates of one parameter (live tensors), or undefined before its first step. */
  moments(name: string): { m: Tensor; v: Tensor } | undefined {
    return this.#state.get(name);
  }

  /** Copies of the step count (`step`, i32 [1]) and of every moment (`m.<name>`, `v.<name>`, f32). */
  stateDict(): Record<string, Tensor> {
    if (this.#disposed) throw new ArgumentError('stateDict(): this AdamW has been disposed');
    const out: Record<string, Tensor> = { step: Tensor.from(Int32Array.of(this.#step), [1]) };
    for (const [name, { m, v }] of this.#state) {
      out[`m.${name}`] = m.to('f32');
      out[`v.${name}`] = v.to('f32');
    }
    return out;
  }

  /**
   * Restores a stateDict(): `step` and, once a step was taken, `m.<name>` and `v.<name>` for every
   * parameter of the target, each of the parameter's shape. Only the state dict's own names count
   * (an inherited property is absent). Everything is checked before anything is replaced; the
   * tensors are copied.
   */
  loadStateDict(sd: Record<string, Tensor>): void {
    if (this.#disposed) throw new ArgumentError('loadStateDict(): this AdamW has been disposed');
    const given = checkObject(sd, 'stateDict');
    const dict: Record<string, unknown> = Object.create(null);
    for (const key of Object.keys(given)) dict[key] = given[key];
    const stepTensor = checkTensor(dict.step, 'stateDict["step"]', 'i32', 1);
    if (stepTensor.shape[0] !== 1) throw new ShapeError(`stateDict["step"] must have shape [1], got [${stepTensor.shape.join(', ')}]`);
    const step = stepTensor.toArray()[0];
    if (step < 0) throw new ArgumentError(`stateDict["step"] must be >= 0, got ${step}`);
    const params = checkObject(this.#target.parameters(), 'target.parameters()') as Record<string, Tensor>;
    const expected = step === 0 ? [] : Object.keys(params).flatMap((name) => [`m.${name}`, `v.${name}`]);
    const unknown = Object.keys(dict).filter((k) => k !== 'step' && !expected.includes(k));
    if (unknown.length > 0) throw new ArgumentError(`stateDict has entries this optimizer does not${step === 0 ? ' at step 0' : ''}: ${unknown.join(', ')}`);
    const missing = expected.filter((k) => !Object.hasOwn(dict, k));
    if (missing.length > 0) throw new ArgumentError(`stateDict lacks ${missing.join(', ')}`);
    const state = new Map<string, { m: Tensor; v: Tensor }>();
    const copies: Tensor[] = [];
    try {
      for (const name of step > 0 ? Object.keys(params) : []) {
        const param = checkTensor(params[name], `parameters()["${name}"]`, 'f32', (params[name] as Tensor)?.shape?.length ?? 0);
        const shape = param.shape;
        const read = (key: string): Tensor => {
          const t = dict[key];
          if (!Tensor.isTensor(t)) throw new ArgumentError(`stateDict["${key}"] must be a Tensor, got ${describe(t)}`);
          if (t.dtype === 'i32' || t.dtype === 'u8') throw new DTypeError(`stateDict["${key}"] must be a float tensor, got ${t.dtype}`);
          if (t.shape.join() !== shape.join()) {
            throw new ShapeError(`stateDict["${key}"] must have the shape of parameter "${name}" [${shape.join(', ')}], got [${t.shape.join(', ')}]`);
          }
          const f32 = t.to('f32');
          if (f32.device === param.device) {
            copies.push(f32);
            return f32;
          }
          const moved = f32.to(param.device as DeviceSpec);  // the moments live with their parameter
          f32.dispose();
          copies.push(moved);
          return moved;
        };
        state.set(name, { m: read(`m.${name}`), v: read(`v.${name}`) });
      }
    } catch (error) {
      copies.forEach((t) => t.dispose());
      throw error;
    }
    for (const { m, v } of this.#state.values()) {
      m.dispose();
      v.dispose();
    }
    this.#state = state;
    this.#step = step;
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
