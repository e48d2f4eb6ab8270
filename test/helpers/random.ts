import { Tensor } from '../../lib';

/** mulberry32: uniform [0, 1) numbers from a 32-bit seed, independent of the library's generator. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An f32 tensor of uniform values in (−scale, scale) drawn from prng(seed). */
export function uniformTensor(shape: number[], seed: number, scale = 1): Tensor {
  const next = prng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.from(Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale), shape);
}
