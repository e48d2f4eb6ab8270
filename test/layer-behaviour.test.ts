/** Edge cases, ExpertStats, evaluation mode, the L2 window and state dicts of MoELayer, on every device (test/helpers/devices.ts). */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadSafetensors, MoEConfig, MoELayer, saveSafetensors, Tensor } from '../lib';
import { describeOnDevices } from './helpers/devices';
import { uniformTensor } from './helpers/random';

const H = 6;
const base: MoEConfig = {
  hidden: H,
  experts: [{ name: 'e', count: 4, ffnHidden: 5 }],
  activation: 'swiglu',
  router: { topK: 2 },
  losses: { balance: { coeff: 0.01 }, z: { coeff: 0.001 } },
  seed: 3,
};

describeOnDevices((device) => {
  const onDevice = (shape: number[], seed: number) => uniformTensor(shape, seed).to(device);

  describe('routing outputs', () => {
    // On cuda the router compacts the kept slots into the assignment lists on the device and the
    // routing tensors are device copies of its buffers: they must equal the cpu's lists exactly.
    for (const [name, extra] of [
      ['dropless', {}],
      ['capacity 0.6 by position (slots dropped)', { capacity: { factor: 0.6 } }],
      ['expert choice', { router: { type: 'expert-choice', topK: 2 }, losses: { z: { coeff: 0.001 } } }],
    ] as const) {
      test(`${name}: indices, keep, weights and the assignment lists live on ${device} and equal the cpu layer's`, () => {
        const config = { ...base, ...extra } as MoEConfig;
        const x = uniformTensor([37, H], 31);
        const want = new MoELayer({ ...config, device: 'cpu' }).forward(x).routing;
        const got = new MoELayer({ ...config, device }).forward(x.to(device)).routing;
        const pairs: [string, Tensor, Tensor][] = [
          ['indices', got.indices, want.indices], ['keep', got.keep, want.keep], ['weights', got.weights, want.weights],
          ['assignments.token', got.assignments.token, want.assignments.token],
          ['assignments.expert', got.assignments.expert, want.assignments.expert],
          ['assignments.weight', got.assignments.weight, want.assignments.weight],
        ];
        for (const [field, g, w] of pairs) {
          expect([field, g.device]).toEqual([field, device]);
          expect([field, Array.from(g.toArray())]).toEqual([field, Array.from(w.toArray())]);
        }
        if (name.startsWith('capacity')) expect(Array.from(want.keep.toArray())).toContain(0);
      });
    }
  });

  describe('edge cases', () => {
    test('T = 1 gives the same row as the same token inside a batch (dropless, row-wise)', () => {
      const layer = new MoELayer({ ...base, device });
      const batch = onDevice([5, H], 1);
      const yBatch = layer.forward(batch, { training: false }).y.toArray();
      const single = Tensor.from(batch.toArray().slice(0, H) as Float32Array, [1, H], { device });
      const out = layer.forward(single);
      expect(Array.from(out.y.toArray())).toEqual(Array.from(yBatch.slice(0, H)));
      const { dx } = layer.backward(onDevice([1, H], 2));
      expect(dx.shape).toEqual([1, H]);
      expect(Array.from(dx.toArray()).every(Number.isFinite)).toBe(true);
    });

    test('T = 13 (prime) with capacity: C = ceil(1.0·13·2/4) = 7 per expert (C1)', () => {
      const layer = new MoELayer({ ...base, device, capacity: { factor: 1 } });
      const out = layer.forward(onDevice([13, H], 4));
      expect(Math.max(...out.stats.accepted)).toBeLessThanOrEqual(7);
      expect(layer.backward(onDevice([13, H], 5)).dx.shape).toEqual([13, H]);
    });

    test('an expert that receives no token gets zero gradients and zero FLOPs', () => {
      const layer = new MoELayer({ ...base, device, losses: {} });
      const router = layer.parameters()['router.weight'];
      const w = router.toArray() as Float32Array;
      for (let h = 0; h < H; h++) w[h] = -50;  // expert 0 scores far below the rest for positive x
      router.write(w);
      const x = Tensor.from(Float32Array.from({ length: 8 * H }, (_, i) => 0.5 + (i % 7) / 10), [8, H], { device });
      const out = layer.forward(x);
      expect(out.stats.counts[0]).toBe(0);
      expect(out.stats.flops[0]).toBe(0);
      layer.zeroGrad();
      layer.backward(onDevice([8, H], 6));
      const g1 = layer.grads()['experts.e.w1'].toArray();
      const perExpert = 5 * H;
      expect(Array.from(g1.slice(0, perExpert)).every((v) => v === 0)).toBe(true);
      expect(Array.from(g1.slice(perExpert)).some((v) => v !== 0)).toBe(true);
    });

    test('every token dropped (C4: minAffinity above any cosine): y = 0 and the experts get no gradient', () => {
      const layer = new MoELayer({ ...base, device, router: { type: 'affinity', topK: 2, minAffinity: 1 }, losses: { balance: { coeff: 0.01 } } });
      const out = layer.forward(onDevice([9, H], 7));
      expect(Array.from(out.routing.keep.toArray()).every((k) => k === 0)).toBe(true);
      expect(Array.from(out.y.toArray()).every((v) => v === 0)).toBe(true);
      expect(out.routing.assignments.token.shape).toEqual([0]);
      layer.zeroGrad();
      const { dx } = layer.backward(onDevice([9, H], 8));
      expect(Array.from(dx.toArray()).every(Number.isFinite)).toBe(true);
      expect(Array.from(layer.grads()['experts.e.w2'].toArray()).every((v) => v === 0)).toBe(true);
      expect(Array.from(layer.grads()['router.weight'].toArray()).some((v) => v !== 0)).toBe(true);  // the balance loss still trains the router
    });

    test('T = 0 runs and returns empty outputs', () => {
      const layer = new MoELayer({ ...base, device });
      const out = layer.forward(Tensor.zeros([0, H], { device }));
      expect(out.y.shape).toEqual([0, H]);
      expect(layer.backward(Tensor.zeros([0, H], { device })).dx.shape).toEqual([0, H]);
    });

    test('hidden may come from the first input', () => {
      const layer = new MoELayer({ ...base, device, hidden: undefined });
      expect(() => layer.parameters()).toThrow(/first forward/);
      layer.forward(onDevice([3, 7], 1));
      expect(layer.parameters()['router.weight'].shape).toEqual([4, 7]);
    });
  });

  describe('ExpertStats (Monitoring)', () => {
    test('maxVio, cv, entropy and FLOPs follow from the counts', () => {
      const layer = new MoELayer({ ...base, device });
      const T = 16;
      const out = layer.forward(onDevice([T, H], 9));
      const c = Array.from(out.stats.counts);
      const mean = c.reduce((a, b) => a + b, 0) / c.length;
      const std = Math.sqrt(c.reduce((a, b) => a + (b - mean) ** 2, 0) / c.length);
      expect(out.stats.maxVio).toBeCloseTo(Math.max(...c) / mean - 1, 9);
      expect(out.stats.cv).toBeCloseTo(std / mean, 9);
      const total = c.reduce((a, b) => a + b, 0);
      const entropy = -c.filter((v) => v > 0).reduce((a, v) => a + (v / total) * Math.log(v / total), 0) / Math.log(c.length);
      expect(out.stats.entropy).toBeCloseTo(entropy, 9);
      c.forEach((rows, e) => expect(out.stats.flops[e]).toBe(2 * rows * H * 5 * 3));  // swiglu: w1, w3, w2
      expect(Array.from(out.stats.f)).toEqual(c.map((v) => v / (T * 2)));
      expect(out.stats.tokens).toBe(T);
    });
  });

  describe('state', () => {
    test('an evaluation forward moves neither the step nor router.load (R10)', () => {
      const layer = new MoELayer({ ...base, device, router: { type: 'sampled', topK: 2 }, seed: 5 });
      const x = onDevice([8, H], 10);
      layer.forward(x);
      const load = Array.from(layer.stateDict()['router.load'].toArray());
      const a = layer.forward(x, { training: false });
      const b = layer.forward(x, { training: false });
      expect(layer.step).toBe(1);
      expect(Array.from(layer.stateDict()['router.load'].toArray())).toEqual(load);
      expect(Array.from(a.routing.indices.toArray())).toEqual(Array.from(b.routing.indices.toArray()));
    });

    test('endStep() closes the global window: the next micro-batch sees only itself (L2)', () => {
      const layer = new MoELayer({ ...base, device, losses: { balance: { coeff: 0.1, scope: 'global' } } });
      const micro = new MoELayer({ ...base, device, losses: { balance: { coeff: 0.1, scope: 'micro' } } });
      const [a, b] = [onDevice([8, H], 11), onDevice([8, H], 12)];
      const first = layer.forward(a).losses.balance as number;
      expect(first).toBeCloseTo(micro.forward(a).losses.balance as number, 9);
      const second = layer.forward(b).losses.balance as number;
      expect(second).not.toBeCloseTo(micro.forward(b).losses.balance as number, 9);
      layer.endStep();
      expect(layer.forward(a).losses.balance as number).toBeCloseTo(first, 9);
    });

    test('stateDict → safetensors → loadStateDict restores a layer that computes the same outputs', () => {
      const trained = new MoELayer({ ...base, device, router: { topK: 2, bias: true, biasUpdateRate: 0.01 } });
      const x = onDevice([10, H], 13);
      trained.forward(x);
      trained.endStep();
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-sd-')), 'layer.safetensors');
      saveSafetensors(file, trained.stateDict(), { config: JSON.stringify(trained.config) });
      const { tensors, metadata } = loadSafetensors(file);
      const restored = new MoELayer(JSON.parse(metadata.config));
      restored.loadStateDict(tensors);
      expect(Array.from(restored.stateDict()['router.bias'].toArray())).toEqual(Array.from(trained.stateDict()['router.bias'].toArray()));
      expect(Array.from(restored.forward(x, { training: false }).y.toArray())).toEqual(Array.from(trained.forward(x, { training: false }).y.toArray()));
    });

    test('parameters() are live: a write (through a view on the cpu, write() on any device) changes the next forward', () => {
      const layer = new MoELayer({ ...base, device });
      const x = onDevice([4, H], 14);
      const before = layer.forward(x, { training: false }).y.toArray();
      const w2 = layer.parameters()['experts.e.w2'];
      if (device === 'cpu') (w2.view() as Float32Array).fill(0);
      else w2.write(new Float32Array(w2.numel));
      expect(Array.from(layer.forward(x, { training: false }).y.toArray()).every((v) => v === 0)).toBe(true);
      expect(Array.from(before).some((v) => v !== 0)).toBe(true);
    });

    test('gradients accumulate over backward calls until zeroGrad()', () => {
      const layer = new MoELayer({ ...base, device });
      const x = onDevice([4, H], 15);
      const dy = onDevice([4, H], 16);
      layer.forward(x);
      layer.backward(dy);
      const once = Array.from(layer.grads()['experts.e.w1'].toArray());
      layer.forward(x);
      layer.backward(dy);
      const twice = Array.from(layer.grads()['experts.e.w1'].toArray());
      twice.forEach((v, i) => expect(v).toBeCloseTo(2 * once[i], 5));
      layer.zeroGrad();
      expect(Array.from(layer.grads()['experts.e.w1'].toArray()).every((v) => v === 0)).toBe(true);
    });
  });
});
