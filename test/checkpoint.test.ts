/**
 * Checkpoints (issue #9): layer.stateDict() and optimizer.stateDict() → saveSafetensors →
 * loadSafetensors → loadStateDict() resumes training bit for bit; a truncated or tampered file is
 * rejected with FormatError before anything is loaded, and a rejected state dict changes nothing.
 * The resume tests run on every device (test/helpers/devices.ts).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AdamW, ArgumentError, DeviceSpec, FormatError, MoEConfig, MoELayer, ShapeError, Tensor, loadSafetensors, saveSafetensors } from '../lib';
import { EMULATED_PROJECT, describeOnDevices } from './helpers/devices';
import { decisions } from './helpers/layer';

const config: MoEConfig = {
  hidden: 8,
  experts: [{ name: 'a', count: 3, ffnHidden: 6 }, { name: 'b', count: 1, ffnHidden: 4 }],
  sharedExperts: { count: 1, ffnHidden: 4 },
  activation: 'swiglu',
  router: { topK: 2, bias: true, biasUpdateRate: 0.01 },
  capacity: { factor: 1.5, policy: 'score' },
  losses: { balance: { coeff: 0.01, scope: 'global' }, z: { coeff: 0.001 }, orthogonality: { coeff: 0.01 } },
  seed: 1,
};
const STEPS = 6;
const RESUME_AT = 3;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-checkpoint-'));

/** One optimiser step: 2 micro-batches of seeded data, AdamW, then endStep (B1, the L2 window). */
function trainStep(layer: MoELayer, optimizer: AdamW, step: number): void {
  const device = layer.config.device as DeviceSpec | undefined;
  layer.zeroGrad();
  for (let micro = 0; micro < 2; micro++) {
    const x = Tensor.randn([16, 8], { seed: 1000 + step * 10 + micro, device });
    const dy = Tensor.randn([16, 8], { seed: 2000 + step * 10 + micro, device });
    const out = layer.forward(x);
    layer.backward(dy).dx.dispose();
    for (const t of [x, dy, out.y]) t.dispose();
  }
  optimizer.step();
  layer.endStep();
}

/** Every parameter and state tensor's bytes (router.load and router.step included), as one comparable record. */
function snapshot(layer: MoELayer): Record<string, string> {
  const state = layer.stateDict();
  return Object.fromEntries(Object.entries(state).map(([name, t]) => [name, Buffer.from(t.toArray().buffer).toString('base64')]));
}

function saveCheckpoint(file: string, layer: MoELayer, optimizer: AdamW): void {
  const prefixed = (prefix: string, sd: Record<string, Tensor>) => Object.fromEntries(Object.entries(sd).map(([k, t]) => [prefix + k, t]));
  saveSafetensors(file, { ...prefixed('layer.', layer.stateDict()), ...prefixed('optim.', optimizer.stateDict()) }, { config: JSON.stringify(layer.config) });
}

function loadCheckpoint(file: string, layer: MoELayer, optimizer: AdamW): void {
  const { tensors } = loadSafetensors(file);
  const part = (prefix: string) => Object.fromEntries(Object.entries(tensors).filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
  layer.loadStateDict(part('layer.'));
  optimizer.loadStateDict(part('optim.'));
}

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describeOnDevices((device) => {
  test('a resumed load-aware sampled router (R10) draws the same noise and load as an uninterrupted one', () => {
    const sampled: MoEConfig = { ...config, router: { type: 'sampled', topK: 2, loadPenalty: 2, loadDecay: 0.3 }, capacity: undefined, losses: { balance: { coeff: 0.01 } } };
    const run = (layer: MoELayer, optimizer: AdamW, from: number, to: number) => {
      const snaps: Record<string, string>[] = [];
      for (let s = from; s < to; s++) {
        trainStep(layer, optimizer, s);
        snaps.push(snapshot(layer));
      }
      return snaps;
    };
    const a = new MoELayer({ ...sampled, device });
    const optA = new AdamW(a, { lr: 1e-2 });
    const first = run(a, optA, 0, RESUME_AT);
    const file = path.join(tmp, 'sampled.safetensors');
    saveCheckpoint(file, a, optA);
    const rest = run(a, optA, RESUME_AT, STEPS);
    const b = new MoELayer(JSON.parse(loadSafetensors(file).metadata.config));
    const optB = new AdamW(b, { lr: 1e-2 });
    loadCheckpoint(file, b, optB);
    expect(b.step).toBe(a.step - 2 * (STEPS - RESUME_AT));
    expect(snapshot(b)).toEqual(first[RESUME_AT - 1]);
    expect(run(b, optB, RESUME_AT, STEPS)).toEqual(rest);
  });

  // Issue #16 item 8 (DESIGN §3 R10, the §2 state dict): R10's noise is keyed by the seed, which the
  // state dict carries as router.seed (i32 [2], low and high 32-bit words), so a resume draws the
  // checkpoint's noise whatever seed the new layer was built with; before, it silently drew other noise.
  test('router.seed: a sampled router loaded into a layer built with another seed routes bit-identically to the original', () => {
    const sampled: MoEConfig = { ...config, router: { type: 'sampled', topK: 2, loadPenalty: 2, loadDecay: 0.3 }, capacity: undefined, losses: { balance: { coeff: 0.01 } }, device };
    const a = new MoELayer({ ...sampled, seed: 1 });
    const optA = new AdamW(a, { lr: 1e-2 });
    for (let s = 0; s < 2; s++) trainStep(a, optA, s);
    const sd = a.stateDict();
    const b = new MoELayer({ ...sampled, seed: 2 });
    b.loadStateDict(sd);
    expect([b.seed, b.step]).toEqual([1, a.step]);
    const x = Tensor.randn([16, 8], { seed: 4242, device });
    const bits = (t: Tensor) => Buffer.from(t.toArray().buffer).toString('base64');
    const outA = a.forward(x);
    const outB = b.forward(x);
    expect(decisions(outB)).toBe(decisions(outA));
    expect(bits(outB.routing.weights)).toBe(bits(outA.routing.weights));
    expect(bits(outB.y)).toBe(bits(outA.y));

    // A state dict from before router.seed existed loads and keeps the constructor's seed, whose
    // noise routes differently here: what the entry is for.
    const old = Object.fromEntries(Object.entries(sd).filter(([name]) => name !== 'router.seed'));
    const c = new MoELayer({ ...sampled, seed: 2 });
    c.loadStateDict(old);
    expect([c.seed, c.step]).toEqual([2, a.step - 1]);
    expect(decisions(c.forward(x))).not.toBe(decisions(outA));
  });

  test('router.seed holds any seed up to 2^53-1 as [low, high] 32-bit words and loads it back', () => {
    const words = (layer: MoELayer) => {
      const entry = layer.stateDict()['router.seed'];
      expect([entry.dtype, entry.shape]).toEqual(['i32', [2]]);
      return Array.from(entry.toArray());
    };
    for (const seed of [0, 2 ** 31, 2 ** 32 + 5, 2 ** 42 + 3]) {
      const layer = new MoELayer({ ...config, device, seed });
      const [low, high] = words(layer);
      expect((low >>> 0) + high * 2 ** 32).toBe(seed);
      const other = new MoELayer({ ...config, device, seed: 3 });
      other.loadStateDict(layer.stateDict());
      expect(other.seed).toBe(seed);
    }
    // the largest seed, [2^32-1, 2^21-1] as i32 bits, through loadStateDict and back
    const layer = new MoELayer({ ...config, device, seed: 3 });
    layer.loadStateDict({ ...layer.stateDict(), 'router.seed': Tensor.from([-1, 2 ** 21 - 1], [2], { dtype: 'i32' }) });
    expect(layer.seed).toBe(2 ** 53 - 1);
    expect(words(layer)).toEqual([-1, 2 ** 21 - 1]);
    // and through the constructor: the k-th initial tensor is keyed (1000·seed + k) mod 2^53
    const largest = new MoELayer({ ...config, device, seed: 2 ** 53 - 1 });
    expect(words(largest)).toEqual([-1, 2 ** 21 - 1]);
    const next = new MoELayer({ ...config, device, seed: 2 ** 53 - 2 });
    expect(largest.parameters()['router.weight'].toArray()).not.toEqual(next.parameters()['router.weight'].toArray());
  });

  test('initial weights: the k-th tensor is Philox-keyed 1000·seed + k, as before large seeds were accepted', () => {
    const layer = new MoELayer({ ...config, device, seed: 7 });
    const H = config.hidden as number;
    const E = config.experts.reduce((sum, g) => sum + g.count, 0);
    const want = Tensor.randn([E, H], { seed: 7000, std: 1 / Math.sqrt(H) });
    expect(Array.from(layer.parameters()['router.weight'].toArray())).toEqual(Array.from(want.toArray()));
  });

  describe('checkpoints', () => {
    const straight: Record<string, string>[] = [];
    const layer = new MoELayer({ ...config, device });
    const optimizer = new AdamW(layer, { lr: 1e-2, weightDecay: 0.1 });
    const file = path.join(tmp, 'resume.safetensors');
    for (let s = 0; s < STEPS; s++) {
      trainStep(layer, optimizer, s);
      straight.push(snapshot(layer));
      if (s === RESUME_AT - 1) saveCheckpoint(file, layer, optimizer);
    }

    test(`a run resumed from a checkpoint after step ${RESUME_AT} matches the uninterrupted run step for step, bit for bit`, () => {
      const resumed = new MoELayer({ ...config, device, seed: 99 });  // other initial weights: everything must come from the file
      const optimizerB = new AdamW(resumed, { lr: 1e-2, weightDecay: 0.1 });
      loadCheckpoint(file, resumed, optimizerB);
      expect(optimizerB.stepCount).toBe(RESUME_AT);
      expect(snapshot(resumed)).toEqual(straight[RESUME_AT - 1]);
      for (let s = RESUME_AT; s < STEPS; s++) {
        trainStep(resumed, optimizerB, s);
        expect(snapshot(resumed)).toEqual(straight[s]);
      }
    });

    test('the optimizer state round-trips: step and both moments of every parameter', () => {
      const sd = optimizer.stateDict();
      expect(Array.from(sd.step.toArray())).toEqual([STEPS]);
      expect(Object.keys(sd).sort()).toEqual(['step', ...Object.keys(layer.parameters()).flatMap((n) => [`m.${n}`, `v.${n}`])].sort());
      const other = new AdamW(layer);
      other.loadStateDict(sd);
      expect(Array.from((other.moments('router.weight') as { v: Tensor }).v.toArray())).toEqual(Array.from((optimizer.moments('router.weight') as { v: Tensor }).v.toArray()));
    });

    test('a rejected optimizer state dict leaves the optimizer as it was', () => {
      const sd = optimizer.stateDict();
      const before = Array.from((optimizer.moments('experts.a.w1') as { m: Tensor }).m.toArray());
      sd['v.experts.b.w2'] = Tensor.zeros([1, 8, 3]);
      expect(() => optimizer.loadStateDict(sd)).toThrow(ShapeError);
      delete sd['v.experts.b.w2'];
      expect(() => optimizer.loadStateDict(sd)).toThrow(/lacks v\.experts\.b\.w2/);
      expect(() => optimizer.loadStateDict({ ...sd, 'm.nope': Tensor.zeros([1]) })).toThrow(ArgumentError);
      const { 'v.experts.a.w1': inherited, ...own } = optimizer.stateDict();  // own names only: an inherited entry is absent
      expect(() => optimizer.loadStateDict(Object.assign(Object.create({ 'v.experts.a.w1': inherited }), own))).toThrow(/lacks v\.experts\.a\.w1$/);
      expect(Array.from((optimizer.moments('experts.a.w1') as { m: Tensor }).m.toArray())).toEqual(before);
      expect(optimizer.stepCount).toBe(STEPS);
    });
  });
});

// File handling does not depend on the device: once, in the cpu project.
if (!EMULATED_PROJECT) {
  describe('a damaged file is rejected with FormatError before anything is loaded', () => {
    const layer = new MoELayer(config);
    const optimizer = new AdamW(layer, { lr: 1e-2, weightDecay: 0.1 });
    trainStep(layer, optimizer, 0);
    const file = path.join(tmp, 'damaged-source.safetensors');
    saveCheckpoint(file, layer, optimizer);
    const good = fs.readFileSync(file);
    const headerEnd = 8 + Number(good.readBigUInt64LE(0));
    const damaged: [string, Buffer][] = [
      ['truncated in the data', good.subarray(0, good.length - 5)],
      ['truncated in the header', good.subarray(0, 40)],
      ['one data byte flipped', Buffer.from(good).fill(0x5a, good.length - 1)],
      ['a shape in the header changed', Buffer.from(good.toString('latin1').replace('"shape":[4,8]', '"shape":[8,4]'), 'latin1')],
      ['garbage header length', Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), good.subarray(8)])],
    ];
    test.each(damaged)('%s', (_name, bytes) => {
      expect(bytes.equals(good)).toBe(false);
      const bad = path.join(tmp, 'bad.safetensors');
      fs.writeFileSync(bad, bytes);
      const target = new MoELayer({ ...config, seed: 5 });
      const targetOptimizer = new AdamW(target);
      const before = snapshot(target);
      expect(() => loadCheckpoint(bad, target, targetOptimizer)).toThrow(FormatError);
      expect(snapshot(target)).toEqual(before);
      expect(targetOptimizer.stepCount).toBe(0);
    });
    test('the data checksum names the problem', () => {
      expect(() => loadSafetensors(path.join(tmp, 'bad.safetensors'))).toThrow(FormatError);
      fs.writeFileSync(path.join(tmp, 'flip.safetensors'), Buffer.from(good).fill(0, headerEnd, headerEnd + 1));
      expect(() => loadSafetensors(path.join(tmp, 'flip.safetensors'))).toThrow(/does not match its checksum/);
    });
  });
}
