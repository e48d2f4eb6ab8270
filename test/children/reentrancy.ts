/**
 * Arguments that run code while native code reads them (DESIGN §4: "Nothing a JS value does while
 * it is being read (getters, proxies) can free memory that native code is using"), run one case per
 * child process by test/reentrancy.test.ts: a use-after-free is a signal there, not a dead jest
 * worker. argv[2] names the case; the last stdout line is {outcome: 'returned' | 'threw', name,
 * message, ...} for the parent to check.
 */
import { Communicator, MoELayer, Tensor, dist, liveBytes, ops } from '../../lib';
import { validateConfig } from '../../lib/config';
import { NativeTensor, native } from '../../lib/native';

type Outcome = { outcome: 'returned' | 'threw'; name?: string; message?: string; [key: string]: unknown };

const config = { hidden: 8, experts: [{ name: 'e', count: 4, ffnHidden: 16 }], activation: 'swiglu' as const, router: { topK: 2 }, losses: { balance: { coeff: 0.01, scope: 'sequence' as const } }, seed: 1 };

/** An array whose entry `index` is an accessor: returns `value`, runs `effect` on read number `on`. */
function trapArray<T>(values: T[], index: number, on: number, effect: () => void): T[] {
  const array = [...values];
  let reads = 0;
  Object.defineProperty(array, index, { get: () => { if (++reads === on) effect(); return values[index]; }, enumerable: true });
  return array;
}

/** A proxy of `target` whose get trap runs `effect` the first time `key` is read. */
function trapObject<T extends object>(target: T, key: string, effect: () => void): T {
  let fired = false;
  return new Proxy(target, {
    get(t, k, receiver) {
      if (k === key && !fired) {
        fired = true;
        effect();
      }
      return Reflect.get(t, k, receiver);
    },
  });
}

/** A native layer from `config`, with its tensors (to dispose from a trap). */
function nativeLayer() {
  const { spec } = validateConfig(config);
  const t = {
    routerWeight: Tensor.randn([4, 8], { seed: 1 }), routerBias: Tensor.zeros([4]), routerLoad: Tensor.from(new Float32Array(4).fill(0.25), [4]),
    w1: Tensor.randn([4, 16, 8], { seed: 2 }), w3: Tensor.randn([4, 16, 8], { seed: 3 }), w2: Tensor.randn([4, 8, 16], { seed: 4 }),
    g: Tensor.zeros([4, 8]), g1: Tensor.zeros([4, 16, 8]), g3: Tensor.zeros([4, 16, 8]), g2: Tensor.zeros([4, 8, 16]),
  };
  const params = { routerWeight: t.routerWeight.handle, routerBias: t.routerBias.handle, routerLoad: t.routerLoad.handle, groups: [{ w1: t.w1.handle, w3: t.w3.handle, w2: t.w2.handle }] };
  const grads = { routerWeight: t.g.handle, groups: [{ w1: t.g1.handle, w3: t.g3.handle, w2: t.g2.handle }] };
  return { spec, t, params, grads };
}

const CASES: Record<string, () => unknown> = {
  // The reproduction: seqLens[1] disposes the layer on its third read. The facade reads
  // each entry once into a copy, so the forward completes on the live layer.
  'layer.forward: seqLens[1] disposes the layer on its 3rd read': () => {
    const layer = new MoELayer(config);
    const x = Tensor.randn([6, 8], { seed: 1 });
    layer.forward(x, { seqLens: [3, 3] });
    const out = layer.forward(x, { seqLens: trapArray([3, 3], 1, 3, () => layer.dispose()) });
    return Array.from(out.y.toArray()).every(Number.isFinite);
  },
  'layer.forward: seqLens[1] disposes the layer on its 1st read': () => {
    const layer = new MoELayer(config);
    layer.forward(Tensor.randn([6, 8], { seed: 1 }), { seqLens: trapArray([3, 3], 1, 1, () => layer.dispose()) });
  },
  'layer.forward: a Proxy seqLens disposes x': () => {
    const layer = new MoELayer(config);
    const x = Tensor.randn([6, 8], { seed: 1 });
    layer.forward(x, { seqLens: trapObject([3, 3], '1', () => x.dispose()) });
  },
  'native layer forward: seqLens[0] disposes router.weight': () => {
    const { spec, t, params, grads } = nativeLayer();
    const layer = new native.NativeMoELayer(spec, params, grads);
    layer.forward(Tensor.randn([6, 8], { seed: 1 }).handle, null, trapArray([3, 3], 0, 1, () => t.routerWeight.dispose()), true, false);
  },
  'native layer forward: seqLens[1] disposes x': () => {
    const { spec, params, grads } = nativeLayer();
    const layer = new native.NativeMoELayer(spec, params, grads);
    const x = Tensor.randn([6, 8], { seed: 1 });
    layer.forward(x.handle, null, trapArray([3, 3], 1, 1, () => x.dispose()), true, false);
  },
  'native layer constructor: reading params.groups disposes router.weight (already held)': () => {
    const { spec, t, params, grads } = nativeLayer();
    const layer = new native.NativeMoELayer(spec, trapObject(params, 'groups', () => t.routerWeight.dispose()), grads);
    return layer.step;
  },
  'native layer constructor: reading spec.device disposes experts w2': () => {
    const { spec, t, params, grads } = nativeLayer();
    const layer = new native.NativeMoELayer(trapObject(spec, 'device', () => t.w2.dispose()), params, grads);
    return layer.step;
  },
  'Communicator.allToAllV: sendCounts[0] disposes t': () => {
    const comm = dist.init({ backend: 'local' });
    const t = Tensor.randn([4, 3], { seed: 1 });
    comm.allToAllV(t, trapArray([4], 0, 1, () => t.dispose()));
  },
  'native allToAllV: sendCounts[0] disposes t': () => {
    const comm: Communicator = dist.init({ backend: 'local' });
    const t = Tensor.randn([4, 3], { seed: 1 });
    const handle = (comm as unknown as { handle: { allToAllV(t: NativeTensor, c: number[]): unknown } }).handle;
    handle.allToAllV(t.handle, trapArray([4], 0, 1, () => t.dispose()));
  },
  'native groupedGemm: groupSizes[1] disposes a': () => {
    const a = Tensor.randn([6, 4], { seed: 1 });
    const w = Tensor.randn([2, 3, 4], { seed: 2 });
    native.groupedGemm(a.handle, w.handle, trapArray([3, 3], 1, 1, () => a.dispose()));
  },
  'native route: reading spec.router disposes x': () => {
    const x = Tensor.randn([6, 8], { seed: 1 });
    const w = Tensor.randn([4, 8], { seed: 2 });
    native.route(x.handle, w.handle, trapObject(validateConfig(config).spec, 'router', () => x.dispose()), {});
  },
  'native routeBackward: reading opts.bias disposes dWeights': () => {
    const x = Tensor.randn([6, 8], { seed: 1 });
    const w = Tensor.randn([4, 8], { seed: 2 });
    const dWeights = Tensor.randn([6, 2], { seed: 3 });
    native.routeBackward(x.handle, w.handle, validateConfig(config).spec, trapObject({ bias: null }, 'bias', () => dWeights.dispose()), dWeights.handle);
  },
  'native adamwStep: reading config.eps disposes m': () => {
    const [p, g, m, v] = [1, 2, 3, 4].map((seed) => Tensor.randn([5], { seed }));
    native.adamwStep(p.handle, g.handle, m.handle, v.handle, trapObject({ lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0 }, 'eps', () => m.dispose()), 1, 'cpu');
  },
  'native fromData: shape[0] detaches the data buffer': () => {
    const data = new Float32Array(8).fill(1);
    native.NativeTensor.fromData(data, 0, trapArray([2, 4], 0, 1, () => structuredClone(data.buffer, { transfer: [data.buffer] })), false);
  },
  'ops.groupedGemm: groupSizes[0] disposes w': () => {
    const a = Tensor.randn([6, 4], { seed: 1 });
    const w = Tensor.randn([2, 3, 4], { seed: 2 });
    ops.groupedGemm(a, w, trapArray([3, 3], 0, 1, () => w.dispose()));
  },
  'a replaced NativeTensor[Symbol.hasInstance] passes a communicator as a tensor': () => {
    const comm = new native.NativeCommunicator({ backend: 'local' });
    Object.defineProperty(native.NativeTensor, Symbol.hasInstance, { value: () => true });
    native.zLoss(comm as unknown as NativeTensor, 1);
  },
  'an Object.prototype setter that disposes a result tensor while the result is built': () => {
    const rows = Tensor.randn([4, 3], { seed: 1 });
    const dOut = Tensor.randn([2, 3], { seed: 2 });
    const rowToken = Tensor.from(Int32Array.from([0, 1, 1, 0]), [4]);
    let seen: NativeTensor | undefined;
    Object.defineProperty(Object.prototype, 'dRows', { set(value: NativeTensor) { seen = value; value.dispose(); }, configurable: true });
    const r = native.unpermuteBackward(dOut.handle, rowToken.handle, null, rows.handle);
    delete (Object.prototype as Record<string, unknown>).dRows;
    return { disposedBySetter: seen?.disposed === true, keys: Object.keys(r) };
  },
};

const name = process.argv[2];
const body = CASES[name];
if (!body) {
  process.stdout.write(`${JSON.stringify({ cases: Object.keys(CASES) })}\n`);
} else {
  const before = liveBytes();
  let result: Outcome;
  try {
    result = { outcome: 'returned', value: body() as unknown };
  } catch (error) {
    const e = error as Error;
    result = { outcome: 'threw', name: e.name, message: e.message };
  }
  process.stdout.write(`${JSON.stringify({ ...result, liveBytesBefore: before })}\n`);
}
