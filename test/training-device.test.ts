/**
 * Whole training steps on every device (issue #5): forward over two micro-batches, backward,
 * AdamW (its kernel on a cuda device), endStep (B1 bias update, the L2 window) — compared step by
 * step with the same steps on the cpu backend from the same initial state. On cuda the routing and
 * loss arithmetic is the same float64 code (core/), and the expert GEMMs sum in another order, so:
 * decisions (indices, keep, counts) equal; parameters, bias, load and losses within 1e-5 relative
 * (f32 accumulation-order differences over a few steps, ~1e-7 per GEMM).
 */
import { AdamW, MoEConfig, MoELayer, Tensor } from '../lib';
import { describeOnDevices } from './helpers/devices';
import { relativeError } from './helpers/golden';
import { scalarError } from './helpers/tolerances';

const TOL = 1e-5;
const STEPS = 3;

const configs: [string, MoEConfig][] = [
  ['two groups + shared expert, bias, score capacity, global balance, z, orthogonality', {
    hidden: 8,
    experts: [{ name: 'a', count: 3, ffnHidden: 6 }, { name: 'b', count: 2, ffnHidden: 4 }],
    sharedExperts: { count: 1, ffnHidden: 4 },
    activation: 'swiglu',
    router: { topK: 2, bias: true, biasUpdateRate: 0.01 },
    capacity: { factor: 1.25, policy: 'score' },
    losses: { balance: { coeff: 0.01, scope: 'global' }, z: { coeff: 0.001 }, orthogonality: { coeff: 0.01 } },
    seed: 1,
  }],
  ['load-aware sampling with normalised weights, gelu (R10)', {
    hidden: 8,
    experts: [{ name: 'e', count: 6, ffnHidden: 5 }],
    activation: 'gelu',
    router: { type: 'sampled', topK: 2, normalize: true },
    losses: { balance: { coeff: 0.02 } },
    seed: 4,
  }],
];

describeOnDevices((device) => describe.each(configs)('%s', (_name, config) => {
  test(`${STEPS} AdamW steps on the device follow the same steps on the cpu`, () => {
    const reference = new MoELayer({ ...config, device: 'cpu' });
    const layer = new MoELayer({ ...config, device });
    layer.loadStateDict(reference.stateDict());
    const optimizers = [reference, layer].map((l) => new AdamW(l, { lr: 0.01, weightDecay: 0.01 }));
    for (let step = 0; step < STEPS; step++) {
      for (const l of [reference, layer]) l.zeroGrad();
      for (let micro = 0; micro < 2; micro++) {
        const x = Tensor.randn([12, 8], { seed: 100 + step * 10 + micro });
        const dy = Tensor.randn([12, 8], { seed: 200 + step * 10 + micro });
        const want = reference.forward(x);
        const got = layer.forward(x.to(device));
        expect(Array.from(got.routing.indices.toArray())).toEqual(Array.from(want.routing.indices.toArray()));
        expect(Array.from(got.routing.keep.toArray())).toEqual(Array.from(want.routing.keep.toArray()));
        expect(Array.from(got.stats.counts)).toEqual(Array.from(want.stats.counts));
        expect(got.y.device).toBe(device);
        expect(relativeError(got.y.toArray(), want.y.toArray())).toBeLessThan(TOL);
        expect(scalarError(got.aux, want.aux)).toBeLessThan(TOL);
        const dxWant = reference.backward(dy).dx;
        const dxGot = layer.backward(dy.to(device)).dx;
        expect(relativeError(dxGot.toArray(), dxWant.toArray())).toBeLessThan(TOL);
      }
      optimizers.forEach((o) => o.step());
      reference.endStep();
      layer.endStep();
      const want = reference.stateDict();
      const got = layer.stateDict();
      for (const name of Object.keys(want)) {
        expect(got[name].device).toBe(name === 'router.step' || name === 'router.seed' ? 'cpu' : device);  // the counters are host values
        const err = relativeError(got[name].toArray(), want[name].toArray());
        if (!(err < TOL)) throw new Error(`step ${step}: ${name} differs from the cpu by ${err}`);
      }
      expect(optimizers[1].moments('router.weight')?.m.device).toBe(device);
    }
  });
}));
