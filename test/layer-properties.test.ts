/**
 * Properties of routing and capacity that hold for every input (fast-check, seeded):
 * row-wise rules (R1–R8) do not depend on the order of the tokens; counts sum to T·k; capacity
 * (C1–C3) never lets an expert exceed C and accounts for every slot; modality isolation (R2)
 * never sends a token to another modality's expert.
 */
import fc from 'fast-check';
import { MoEConfig, MoELayer, Tensor } from '../lib';
import { uniformTensor } from './helpers/random';

const SEED = 20261124;
const runs = { numRuns: 25, seed: SEED };

const rowWiseRouter = fc.record({
  experts: fc.integer({ min: 2, max: 12 }),
  topK: fc.integer({ min: 1, max: 4 }),
  tokens: fc.integer({ min: 1, max: 24 }),
  hidden: fc.integer({ min: 1, max: 9 }),
  score: fc.constantFrom('softmax' as const, 'sigmoid' as const),
  type: fc.constantFrom('topk' as const, 'affinity' as const),
  normalize: fc.boolean(),
  seed: fc.integer({ min: 0, max: 1000 }),
});

function configOf(p: { experts: number; topK: number; hidden: number; score: 'softmax' | 'sigmoid'; type: 'topk' | 'affinity'; normalize: boolean; seed: number }): MoEConfig {
  return {
    hidden: p.hidden,
    experts: [{ name: 'e', count: p.experts, ffnHidden: 3 }],
    activation: 'swiglu',
    router: { type: p.type, topK: Math.min(p.topK, p.experts), score: p.type === 'affinity' ? 'softmax' : p.score, normalize: p.normalize },
    losses: { balance: { coeff: 0.01 }, z: { coeff: 0.001 } },
    seed: p.seed,
  };
}

function permutation(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let state = seed + 1;
  for (let i = n - 1; i > 0; i--) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

function permuteRows(t: Tensor, order: number[]): Tensor {
  const [T, W] = [t.shape[0], t.shape.length > 1 ? t.shape[1] : 1];
  const src = t.toArray();
  const out = new Float32Array(src.length);
  for (let r = 0; r < T; r++) out.set(src.subarray(order[r] * W, order[r] * W + W), r * W);
  return Tensor.from(out, [...t.shape]);
}

test('row-wise routing is invariant to the order of tokens (R1–R8): same experts, weights and outputs per token', () => {
  fc.assert(
    fc.property(rowWiseRouter, fc.integer({ min: 0, max: 1 << 20 }), (p, permSeed) => {
      const x = uniformTensor([p.tokens, p.hidden], p.seed + 1);
      const order = permutation(p.tokens, permSeed);
      const a = new MoELayer(configOf(p)).forward(x, { training: false });
      const b = new MoELayer(configOf(p)).forward(permuteRows(x, order), { training: false });
      const k = a.routing.indices.shape[1];
      const [ia, ib] = [a.routing.indices.toArray(), b.routing.indices.toArray()];
      const [wa, wb] = [a.routing.weights.toArray(), b.routing.weights.toArray()];
      const [ya, yb] = [a.y.toArray(), b.y.toArray()];
      for (let r = 0; r < p.tokens; r++) {
        for (let j = 0; j < k; j++) {
          expect(ib[r * k + j]).toBe(ia[order[r] * k + j]);
          expect(wb[r * k + j]).toBeCloseTo(wa[order[r] * k + j], 6);
        }
        for (let h = 0; h < p.hidden; h++) expect(yb[r * p.hidden + h]).toBeCloseTo(ya[order[r] * p.hidden + h], 5);
      }
      expect(b.aux).toBeCloseTo(a.aux, 6);
    }),
    runs,
  );
});

test('dropless top-k: counts sum to T·k, every slot is kept, f sums to 1 (R6, ExpertStats)', () => {
  fc.assert(
    fc.property(rowWiseRouter, (p) => {
      const out = new MoELayer(configOf(p)).forward(uniformTensor([p.tokens, p.hidden], p.seed + 2), { training: false });
      const k = Math.min(p.topK, p.experts);
      const counts = Array.from(out.stats.counts);
      expect(counts.reduce((s, c) => s + c, 0)).toBe(p.tokens * k);
      expect(Array.from(out.stats.accepted)).toEqual(counts);
      expect(Array.from(out.routing.keep.toArray()).every((v) => v === 1)).toBe(true);
      expect(Array.from(out.stats.f).reduce((s, f) => s + f, 0)).toBeCloseTo(1, 9);
      // each token's experts are distinct
      const idx = out.routing.indices.toArray();
      for (let t = 0; t < p.tokens; t++) expect(new Set(idx.subarray(t * k, t * k + k)).size).toBe(k);
    }),
    runs,
  );
});

test('capacity never exceeds C = ceil(factor·T·k/E), and kept + dropped slots account for every selection (C1–C3)', () => {
  fc.assert(
    fc.property(rowWiseRouter, fc.double({ min: 0.1, max: 2, noNaN: true }), fc.constantFrom('position' as const, 'score' as const), (p, factor, policy) => {
      const config = { ...configOf(p), capacity: { factor, policy } };
      const out = new MoELayer(config).forward(uniformTensor([p.tokens, p.hidden], p.seed + 3), { training: false });
      const k = Math.min(p.topK, p.experts);
      const capacity = Math.ceil(factor * p.tokens * k / p.experts);
      for (let e = 0; e < p.experts; e++) {
        expect(out.stats.accepted[e]).toBeLessThanOrEqual(capacity);
        expect(out.stats.accepted[e] + out.stats.dropped[e]).toBe(out.stats.counts[e]);
      }
      const kept = Array.from(out.routing.keep.toArray()).reduce((s, v) => s + v, 0);
      expect(out.routing.assignments.token.shape[0]).toBe(kept);
    }),
    runs,
  );
});

test('modality isolation: a token is only ever routed to experts of its modality (R2)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 999 }), (T, seed) => {
      const config: MoEConfig = {
        hidden: 4,
        experts: [{ name: 'text', count: 3, ffnHidden: 2, modality: 0 }, { name: 'image', count: 4, ffnHidden: 2, modality: 1 }],
        activation: 'gelu',
        router: { topK: 2 },
        losses: { balance: { coeff: 0.01 } },
        seed,
      };
      const modality = Array.from({ length: T }, (_, t) => (t * 7 + seed) % 2);
      const out = new MoELayer(config).forward(uniformTensor([T, 4], seed), { modality: Tensor.from(modality, [T], { dtype: 'i32' }), training: false });
      const idx = out.routing.indices.toArray();
      for (let t = 0; t < T; t++) for (const e of idx.subarray(t * 2, t * 2 + 2)) expect(e < 3 ? 0 : 1).toBe(modality[t]);
    }),
    runs,
  );
});
