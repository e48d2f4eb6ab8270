/**
 * DESIGN §4, non-finite input: a token whose x row holds a NaN or ±Infinity throws ArgumentError
 * naming the token, for every router type, before any state changes — on every device
 * (test/helpers/devices.ts). Before this rule, affinity routing sent a NaN token to experts 0 and
 * 1, expert choice let a NaN or Inf token take a slot of every expert (and the CPU and the
 * emulated CUDA device picked different tokens for Inf); top-k already threw.
 */
import { ArgumentError, MoEConfig, MoELayer, Tensor, ops } from '../lib';
import { describeOnDevices } from './helpers/devices';
import { expectTypedError } from './helpers/expect-error';
import { uniformTensor } from './helpers/random';

const H = 6;
const T = 8;
const experts = [{ name: 'e', count: 4, ffnHidden: 5 }];
const ROUTERS: [string, MoEConfig][] = [
  ['top-k softmax', { hidden: H, experts, activation: 'swiglu', router: { topK: 2 }, losses: { balance: { coeff: 0.01 } }, seed: 1 }],
  ['top-k sigmoid with bias (B1)', { hidden: H, experts, activation: 'swiglu', router: { topK: 2, score: 'sigmoid', bias: true, biasUpdateRate: 0.01 }, seed: 2 }],
  ['affinity with minAffinity', { hidden: H, experts, activation: 'swiglu', router: { type: 'affinity', topK: 2, temperature: 0.5, minAffinity: 0.1 }, seed: 3 }],
  ['expert-choice', { hidden: H, experts, activation: 'gelu', router: { type: 'expert-choice', topK: 1 }, capacity: { factor: 1.5 }, seed: 4 }],
  ['sampled (R10)', { hidden: H, experts, activation: 'swiglu', router: { type: 'sampled', topK: 2, loadPenalty: 1, loadDecay: 0.2 }, seed: 5 }],
  ['top-k with global balance window (L2)', { hidden: H, experts, activation: 'relu', router: { topK: 1 }, losses: { balance: { coeff: 0.01, scope: 'global' } }, seed: 6 }],
];
const BAD: [string, number][] = [['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]];

/** The bytes of every state dict entry, to compare two layers exactly. */
function stateBytes(layer: MoELayer): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [name, t] of Object.entries(layer.stateDict())) {
    out[name] = Array.from(new Uint8Array(t.toArray().buffer));
    t.dispose();
  }
  return out;
}

describeOnDevices((device) => {
  const good = (seed: number) => uniformTensor([T, H], seed).to(device);
  const bad = (value: number, token: number, column: number) => {
    const values = uniformTensor([T, H], 9).toArray() as Float32Array;
    values[token * H + column] = value;
    return Tensor.from(values, [T, H], { device });
  };

  describe.each(ROUTERS)('%s', (_name, config) => {
    test.each(BAD)('a %s token throws ArgumentError naming it; state, step and the next forward as if it never ran', (what, value) => {
      const layer = new MoELayer({ ...config, device });
      const twin = new MoELayer({ ...config, device });
      for (const l of [layer, twin]) {
        l.forward(good(1));
        l.backward(good(2));
        l.endStep();
        l.forward(good(3));  // an open window and a saved forward when the bad call comes
      }
      expectTypedError(() => layer.forward(bad(value, 5, 2)), ArgumentError, new RegExp(`^x: expected finite values, got ${what.replace('-', '\\-')} at x\\[5, 2\\] \\(token 5\\)$`));
      expect(layer.step).toBe(twin.step);
      expect(stateBytes(layer)).toEqual(stateBytes(twin));
      // The forward before the bad call is still the one backward differentiates.
      const dxLayer = layer.backward(good(4)).dx.toArray();
      expect(Array.from(dxLayer)).toEqual(Array.from(twin.backward(good(4)).dx.toArray()));
      layer.endStep();
      twin.endStep();
      const a = layer.forward(good(5));
      const b = twin.forward(good(5));
      expect(Array.from(a.y.toArray())).toEqual(Array.from(b.y.toArray()));
      expect(Array.from(a.routing.assignments.expert.toArray())).toEqual(Array.from(b.routing.assignments.expert.toArray()));
      expect(Array.from(a.stats.counts)).toEqual(Array.from(b.stats.counts));
      layer.dispose();
      twin.dispose();
    });

    test('evaluation mode (training: false) refuses the token too', () => {
      const layer = new MoELayer({ ...config, device });
      expectTypedError(() => layer.forward(bad(NaN, 0, 0), { training: false }), ArgumentError, /token 0\)$/);
      layer.dispose();
    });
  });
});

describe('ops.route (cpu)', () => {
  test.each([['topk', {}], ['affinity', { type: 'affinity' as const }], ['sampled', { type: 'sampled' as const, loadPenalty: 1 }]])('%s refuses a non-finite token', (_name, router) => {
    const x = uniformTensor([T, H], 1).toArray() as Float32Array;
    x[3 * H + 4] = Infinity;
    const weight = uniformTensor([4, H], 2);
    expectTypedError(() => ops.route(Tensor.from(x, [T, H]), weight, { topK: 2, ...router }), ArgumentError, /^x: expected finite values, got Infinity at x\[3, 4\] \(token 3\)$/);
  });
});
