/** Misuse of the layer throws typed errors naming the argument (DESIGN §4); nothing crashes. */
import {
  ArgumentError,
  DeviceError,
  DisposedError,
  DTypeError,
  MoEConfig,
  MoEConfigError,
  MoekitError,
  MoELayer,
  NumericsError,
  parseSafetensors,
  serializeSafetensors,
  ShapeError,
  Tensor,
} from '../lib';
import { native } from '../lib/native';
import { ErrorCase, expectTypedError } from './helpers/expect-error';
import { withLiveState } from './helpers/layer';
import { uniformTensor } from './helpers/random';

const config: MoEConfig = {
  hidden: 4,
  experts: [{ name: 'e', count: 4, ffnHidden: 3 }],
  activation: 'swiglu',
  router: { topK: 2 },
  losses: { balance: { coeff: 0.01, scope: 'sequence' } },
};
const withModality: MoEConfig = {
  ...config,
  experts: [{ name: 'text', count: 2, ffnHidden: 3, modality: 0 }, { name: 'image', count: 2, ffnHidden: 3, modality: 1 }],
  losses: {},
};
const x = uniformTensor([6, 4], 1);

const cases: ErrorCase[] = [
  ['wrong hidden size', () => new MoELayer(config).forward(uniformTensor([6, 5], 1), { seqLens: [6] }), ShapeError, /x must have shape \[T, 4\], got \[6, 5\]/],
  ['x of rank 3', () => new MoELayer(config).forward(Tensor.zeros([2, 3, 4])), ShapeError, /\[T, hidden\]/],
  ['x in bf16', () => new MoELayer(config).forward(x.to('bf16')), DTypeError, /x must be f32/],
  ['x not a tensor', () => new MoELayer(config).forward([1, 2] as never), ArgumentError, /x must be a Tensor/],
  ['modality out of range', () => new MoELayer(withModality).forward(x, { modality: Tensor.from([0, 1, 2, 0, 1, 0], [6], { dtype: 'i32' }) }), ArgumentError, /modality\[2\] = 2 matches no expert group/],
  ['modality of the wrong length', () => new MoELayer(withModality).forward(x, { modality: Tensor.from([0, 1], [2], { dtype: 'i32' }) }), ShapeError, /opts\.modality must have shape \[6\]/],
  ['modality as f32', () => new MoELayer(withModality).forward(x, { modality: Tensor.zeros([6]) }), DTypeError, /opts\.modality must be i32/],
  ['topK above the experts', () => new MoELayer({ ...config, router: { topK: 5 } }), MoEConfigError, /config\.router\.topK must be an integer in \[1, 4\]/],
  ['groups not dividing E', () => new MoELayer({ ...config, router: { topK: 1, groupLimited: { groups: 3, topGroups: 1 } } }), MoEConfigError, /groupLimited\.groups must be a divisor of the 4 experts/],
  ['seqLens not summing to T', () => new MoELayer(config).forward(x, { seqLens: [2, 3] }), ShapeError, /seqLens must sum to the 6 tokens of x, got 5/],
  ['seqLens missing for the sequence scope', () => new MoELayer(config).forward(x), ArgumentError, /seqLens/],
  ['NaN in x with checkFinite', () => { const bad = uniformTensor([6, 4], 2); (bad.view() as Float32Array)[9] = NaN; return new MoELayer(config).forward(bad, { seqLens: [6], checkFinite: true }); }, NumericsError, /x\[2, 1\] is NaN \(checkFinite\)/],
  ['unknown config field', () => new MoELayer({ ...config, router: { topk: 2 } as never }), MoEConfigError, /router\.topk is not a MoEConfig field \(did you mean topK\?\)/],
  ['missing activation', () => new MoELayer({ ...config, activation: undefined as never }), MoEConfigError, /config\.activation must be one of/],
  ['duplicate group names', () => new MoELayer({ ...config, experts: [{ name: 'a', count: 1, ffnHidden: 1 }, { name: 'a', count: 1, ffnHidden: 1 }] }), MoEConfigError, /used by another group/],
  ['negative coefficient', () => new MoELayer({ ...config, losses: { z: { coeff: -1 } } }), MoEConfigError, /losses\.z\.coeff/],
  ['balance loss with expert choice', () => new MoELayer({ ...config, router: { type: 'expert-choice', topK: 1 } }), MoEConfigError, /no balance loss \(R9\)/],
  ['crossGroup with one group', () => new MoELayer({ ...config, losses: { orthogonality: { coeff: 1, mode: 'crossGroup' } } }), MoEConfigError, /crossGroup/],
  ['fp8 experts with f32 compute', () => new MoELayer({ ...config, precision: { compute: 'f32', experts: 'fp8' } }), MoEConfigError, /precision\.compute must be 'bf16' with fp8 experts/],
  ['a cuda device', () => new MoELayer({ ...config, device: 'cuda:0' }), DeviceError, /cuda:0/],
  ['backward before forward', () => new MoELayer(config).backward(x), ArgumentError, /training forward first/],
  ['backward twice', () => { const l = new MoELayer(config); l.forward(x, { seqLens: [6] }); l.backward(x); return l.backward(x); }, ArgumentError, /training forward first/],
  ['backward after an evaluation forward', () => { const l = new MoELayer(config); l.forward(x, { seqLens: [6], training: false }); return l.backward(x); }, ArgumentError, /training forward first/],
  ['dy of the wrong shape', () => { const l = new MoELayer(config); l.forward(x, { seqLens: [6] }); return l.backward(Tensor.zeros([5, 4])); }, ShapeError, /dy must have the shape of y, \[6, 4\]/],
  ['a disposed parameter', () => { const l = new MoELayer(config); l.parameters()['experts.e.w1'].dispose(); return l.forward(x, { seqLens: [6] }); }, DisposedError, /experts\.groups\[0\]\.w1 was disposed|disposed/],
  ['a disposed input', () => { const t = uniformTensor([6, 4], 3); t.dispose(); return new MoELayer(config).forward(t, { seqLens: [6] }); }, DisposedError, /disposed/],
  ['loadStateDict with a wrong shape', () => { const l = new MoELayer(config); const sd = l.stateDict(); sd['router.weight'] = Tensor.zeros([4, 5]); return l.loadStateDict(sd); }, ShapeError, /stateDict\["router\.weight"\] must have shape \[4, 4\]/],
  ['loadStateDict with a missing name', () => { const l = new MoELayer(config); const sd = l.stateDict(); delete sd['router.load']; return l.loadStateDict(sd); }, ArgumentError, /lacks router\.load/],
  ['loadStateDict with an unknown name', () => { const l = new MoELayer(config); return l.loadStateDict({ ...l.stateDict(), extra: Tensor.zeros([1]) }); }, ArgumentError, /names this layer does not: extra/],
  ['native layer with an empty spec', () => new native.NativeMoELayer({}, {} as never, {} as never), MoEConfigError, /spec\.hidden/],
];

describe('layer misuse', () => {
  test.each(cases)('%s', (_name, call, errorClass, message) => expectTypedError(call, errorClass, message));

  test('a rejected state dict leaves the layer unchanged', () => {
    const layer = new MoELayer(config);
    const before = Array.from(layer.parameters()['router.weight'].toArray());
    const sd = layer.stateDict();
    sd['router.weight'] = Tensor.zeros([4, 4]);
    sd['experts.e.w2'] = Tensor.zeros([1]);
    expect(() => layer.loadStateDict(sd)).toThrow(ShapeError);
    expect(Array.from(layer.parameters()['router.weight'].toArray())).toEqual(before);
  });

  test('NaN in x without checkFinite never crashes: it throws a typed error or propagates NaN', () => {
    const bad = uniformTensor([6, 4], 2);
    (bad.view() as Float32Array)[0] = NaN;
    let result: unknown;
    try {
      result = new MoELayer(config).forward(bad, { seqLens: [6] });
    } catch (error) {
      expect(error).toBeInstanceOf(MoekitError);
      return;
    }
    expect(result).toBeDefined();
  });
});

/**
 * DESIGN §4: a failed call writes nothing. loadStateDict checks every entry (own names only), this
 * layer's own tensors and the counters before it writes anything, so each cause below leaves every
 * byte the layer holds, its step and its seed as they were.
 */
describe('a failed loadStateDict writes nothing (DESIGN §4)', () => {
  const sampled: MoEConfig = { ...config, router: { type: 'sampled', topK: 2 }, losses: {}, seed: 1 };
  type Live = ReturnType<typeof withLiveState>;
  type Cause = [string, (target: Live, sd: Record<string, Tensor>) => Record<string, Tensor>, new (...args: never[]) => Error, RegExp];

  /** A state dict that differs from a fresh layer in every entry: other seed, one training forward (step, load), a bias. */
  function otherState(): Record<string, Tensor> {
    const source = new MoELayer({ ...sampled, seed: 2 ** 40 + 7 });
    source.forward(x);
    return { ...source.stateDict(), 'router.bias': Tensor.from([0.5, -0.25, 0.125, 1], [4]) };
  }

  /** Every byte of the layer's parameters, router.bias, router.load and gradients (alive ones), its step and seed. */
  function contents({ layer, bias, load }: Live): Record<string, string> {
    const out: Record<string, string> = { step: String(layer.step), seed: String(layer.seed) };
    const held: [string, Record<string, Tensor>][] = [['param', layer.parameters()], ['state', { 'router.bias': bias, 'router.load': load }], ['grad', layer.grads()]];
    for (const [kind, record] of held) {
      for (const [name, t] of Object.entries(record)) out[`${kind} ${name}`] = t.disposed ? 'disposed' : Buffer.from(t.view().buffer).toString('base64');
    }
    return out;
  }

  const replace = (sd: Record<string, Tensor>, name: string, value: unknown) => ({ ...sd, [name]: value as Tensor });
  const ownEntry = (name: string): Cause => [
    `an own entry named ${JSON.stringify(name)} (unknown, whatever Object.prototype has)`,
    (_live, sd) => Object.defineProperty(sd, name, { value: Tensor.zeros([1]), enumerable: true }),
    ArgumentError,
    new RegExp(`names this layer does not: ${name.replace(/[_$]/g, '\\$&')}$`),
  ];
  const causes: Cause[] = [
    ['the layer\'s last parameter was disposed (router.weight comes first)', ({ layer }, sd) => { layer.parameters()['experts.e.w2'].dispose(); return sd; }, DisposedError, /loadStateDict\(\): this layer's parameters\(\)\["experts\.e\.w2"\] has been disposed/],
    ['the layer\'s router.load was disposed', ({ load }, sd) => { load.dispose(); return sd; }, DisposedError, /this layer's state\["router\.load"\] has been disposed/],
    ['one of the layer\'s gradients was disposed', ({ layer }, sd) => { layer.grads()['experts.e.w1'].dispose(); return sd; }, DisposedError, /this layer's grads\(\)\["experts\.e\.w1"\] has been disposed/],
    ['an entry was disposed', (_live, sd) => { sd['experts.e.w2'].dispose(); return sd; }, DisposedError, /stateDict\["experts\.e\.w2"\] has been disposed/],
    ['an entry has the wrong shape', (_live, sd) => replace(sd, 'experts.e.w2', Tensor.zeros([4, 4, 2])), ShapeError, /stateDict\["experts\.e\.w2"\] must have shape \[4, 4, 3\], got \[4, 4, 2\]/],
    ['an entry is i32', (_live, sd) => replace(sd, 'experts.e.w2', Tensor.zeros([4, 4, 3], { dtype: 'i32' })), DTypeError, /stateDict\["experts\.e\.w2"\] must be a float tensor, got i32/],
    ['an entry is not a Tensor', (_live, sd) => replace(sd, 'router.load', [0.25, 0.25, 0.25, 0.25]), ArgumentError, /stateDict\["router\.load"\] must be a Tensor, got array of length 4/],
    ['router.bias holds NaN', (_live, sd) => replace(sd, 'router.bias', Tensor.from([0, 0, NaN, 0], [4])), ArgumentError, /stateDict\["router\.bias"\]\[2\] must be a finite number \(DESIGN §4\), got NaN/],
    ['router.load holds Inf', (_live, sd) => replace(sd, 'router.load', Tensor.from([0.25, Infinity, 0.25, 0.25], [4])), ArgumentError, /stateDict\["router\.load"\]\[1\] must be a finite number \(DESIGN §4\), got Infinity/],
    ['router.bias holds -Inf in bf16', (_live, sd) => replace(sd, 'router.bias', Tensor.from([0, 0, 0, -Infinity], [4], { dtype: 'bf16' })), ArgumentError, /stateDict\["router\.bias"\]\[3\] must be a finite number \(DESIGN §4\), got -Infinity/],
    ['router.step is negative', (_live, sd) => replace(sd, 'router.step', Tensor.from([-1], [1], { dtype: 'i32' })), ArgumentError, /stateDict\["router\.step"\] must be >= 0, got -1/],
    ['router.step is f32', (_live, sd) => replace(sd, 'router.step', Tensor.from([1], [1])), DTypeError, /stateDict\["router\.step"\] must be an i32 tensor of shape \[1\], got f32 \[1\]/],
    ['router.seed is above 2^53-1', (_live, sd) => replace(sd, 'router.seed', Tensor.from([0, 2 ** 21], [2], { dtype: 'i32' })), ArgumentError, /stateDict\["router\.seed"\] must hold a seed in \[0, 2\^53-1\]: its high word must be in \[0, 2\^21\), got 2097152/],
    ['router.seed has one word', (_live, sd) => replace(sd, 'router.seed', Tensor.from([3], [1], { dtype: 'i32' })), DTypeError, /stateDict\["router\.seed"\] must be an i32 tensor of shape \[2\] \(low and high 32-bit words\), got i32 \[1\]/],
    ['router.seed was disposed', (_live, sd) => { sd['router.seed'].dispose(); return sd; }, DisposedError, /stateDict\["router\.seed"\] has been disposed/],
    ...['constructor', 'toString', 'hasOwnProperty', '__proto__', ''].map(ownEntry),
    ['router.load is only inherited', (_live, sd) => {
      const { 'router.load': load, ...rest } = sd;
      return Object.assign(Object.create({ 'router.load': load }), rest);
    }, ArgumentError, /stateDict lacks router\.load$/],
    ['router.step is only inherited', (_live, sd) => {
      const { 'router.step': step, ...rest } = sd;
      return Object.assign(Object.create({ 'router.step': step }), rest);
    }, ArgumentError, /stateDict lacks router\.step$/],
  ];

  test('the control: the same state dict without a fault loads, changing every parameter, the state, the step and the seed', () => {
    const live = withLiveState(() => new MoELayer(sampled));
    const before = contents(live);
    live.layer.loadStateDict(otherState());
    const after = contents(live);
    const changed = Object.keys(before).filter((k) => !k.startsWith('grad ') && before[k] !== after[k]);
    expect(changed.sort()).toEqual(Object.keys(before).filter((k) => !k.startsWith('grad ')).sort());
    expect(live.layer.seed).toBe(2 ** 40 + 7);
  });

  test.each(causes)('%s: a typed error, and the layer is bit-identical', (_name, prepare, errorClass, message) => {
    const live = withLiveState(() => new MoELayer(sampled));
    const sd = prepare(live, otherState());
    const before = contents(live);
    expectTypedError(() => live.layer.loadStateDict(sd), errorClass, message);
    expect(contents(live)).toEqual(before);
  });

  test('a tensor named __proto__ in a safetensors file is an unknown name, not a prototype (DESIGN §4)', () => {
    const live = withLiveState(() => new MoELayer(sampled));
    const sd = otherState();
    const { tensors } = parseSafetensors(serializeSafetensors({ ...sd, ['__proto__']: Tensor.zeros([1]) }));
    const before = contents(live);
    expectTypedError(() => live.layer.loadStateDict(tensors), ArgumentError, /names this layer does not: __proto__$/);
    expect(contents(live)).toEqual(before);
    delete tensors['__proto__'];
    live.layer.loadStateDict(tensors);
    expect(live.layer.seed).toBe(2 ** 40 + 7);
  });
});
