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
  ShapeError,
  Tensor,
} from '../lib';
import { native } from '../lib/native';
import { ErrorCase, expectTypedError } from './helpers/expect-error';
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
