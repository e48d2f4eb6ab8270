/**
 * The demo's synthetic multi-domain classification task, seeded and deterministic.
 *
 * Every class c has a base mean μ_c in a SIGNAL-dimensional subspace. Domain d rotates that
 * subspace by its own random orthogonal R_d and shifts everything by its own offset o_d, so
 *   x = R_d·μ_c + o_d + noise      (noise ~ N(0, NOISE²) in all HIDDEN dimensions).
 * The 32 (domain, class) clusters share the SIGNAL dimensions, so one linear head cannot separate
 * them all; a layer that recognises the domain (by its offset) and undoes its rotation can.
 */
export const DOMAINS = 4;
export const CLASSES = 8;
export const HIDDEN = 64;
const SIGNAL = 16;
const MEAN_STD = 1.0;
const OFFSET_STD = 1.0;
const NOISE = 1.0;

/** Uniform [0, 1) numbers from a 32-bit seed (mulberry32). */
export function uniformStream(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One N(0, 1) draw (Box–Muller; 1 − u keeps the log finite). */
function gaussian(uniform: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** A random n×n orthogonal matrix (row-major): Gram–Schmidt on the rows of a Gaussian matrix. */
function randomRotation(n: number, uniform: () => number): Float64Array {
  const q = Float64Array.from({ length: n * n }, () => gaussian(uniform));
  for (let i = 0; i < n; i++) {
    const row = q.subarray(i * n, (i + 1) * n);
    for (let j = 0; j < i; j++) {
      const prev = q.subarray(j * n, (j + 1) * n);
      const dot = row.reduce((sum, v, k) => sum + v * prev[k], 0);
      for (let k = 0; k < n; k++) row[k] -= dot * prev[k];
    }
    const norm = Math.hypot(...row);
    for (let k = 0; k < n; k++) row[k] /= norm;
  }
  return q;
}

/** Tokens: x [T, HIDDEN] row-major, with each token's class and domain. */
export interface Batch {
  x: Float32Array;
  labels: Int32Array;
  domains: Int32Array;
}

export class DomainTask {
  /** [DOMAINS, CLASSES, HIDDEN]: the mean of each (domain, class) cluster. */
  readonly means = new Float32Array(DOMAINS * CLASSES * HIDDEN);

  constructor(seed: number) {
    const uniform = uniformStream(seed);
    const base = Float64Array.from({ length: CLASSES * SIGNAL }, () => MEAN_STD * gaussian(uniform));
    for (let d = 0; d < DOMAINS; d++) {
      const rotation = randomRotation(SIGNAL, uniform);
      const offset = Float64Array.from({ length: HIDDEN }, () => OFFSET_STD * gaussian(uniform));
      for (let c = 0; c < CLASSES; c++) {
        const mean = this.means.subarray((d * CLASSES + c) * HIDDEN, (d * CLASSES + c + 1) * HIDDEN);
        for (let h = 0; h < HIDDEN; h++) mean[h] = offset[h];
        for (let i = 0; i < SIGNAL; i++) {
          for (let j = 0; j < SIGNAL; j++) mean[i] += rotation[i * SIGNAL + j] * base[c * SIGNAL + j];
        }
      }
    }
  }

  /**
   * T tokens drawn from `uniform`, each of a uniformly drawn class and of `domain`, or of a
   * uniformly drawn domain when `domain` is omitted.
   */
  sample(T: number, uniform: () => number, domain?: number): Batch {
    const x = new Float32Array(T * HIDDEN);
    const labels = new Int32Array(T);
    const domains = new Int32Array(T);
    for (let t = 0; t < T; t++) {
      domains[t] = domain ?? Math.floor(uniform() * DOMAINS);
      labels[t] = Math.floor(uniform() * CLASSES);
      const mean = (domains[t] * CLASSES + labels[t]) * HIDDEN;
      for (let h = 0; h < HIDDEN; h++) x[t * HIDDEN + h] = this.means[mean + h] + NOISE * gaussian(uniform);
    }
    return { x, labels, domains };
  }
}
