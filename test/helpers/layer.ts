import { MoEOutput } from '../../lib';

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
