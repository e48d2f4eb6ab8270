import { MoEConfig, MoELayer, MoEOutput, Tensor } from '../../lib';

/** Σ y·dy accumulated in float64, plus aux: the objective whose gradient backward() returns. */
export function objective(out: MoEOutput, dy: Float32Array): number {
  const y = out.y.toArray();
  let sum = 0;
  for (let i = 0; i < y.length; i++) sum += y[i] * dy[i];
  return sum + out.aux;
}

/** The routing decisions of a forward, as one comparable string. */
export function decisions(out: MoEOutput): string {
  const a = out.routing.assignments;
  return [out.routing.indices, out.routing.keep, a.token, a.expert].map((t) => Array.from(t.toArray()).join(',')).join('|');
}

/** A layer with deterministic small random parameters (seeded by config.seed). */
export function smallLayer(config: MoEConfig): MoELayer {
  return new MoELayer(config);
}

/** Deterministic pseudo-random f32 tensor in (−scale, scale) without the library's generator. */
export function lcgTensor(shape: number[], seed: number, scale = 1): Tensor {
  let state = seed >>> 0 || 1;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = ((state / 2 ** 32) * 2 - 1) * scale;
  }
  return Tensor.from(data, shape);
}
