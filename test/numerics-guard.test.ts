/**
 * The numerics guard (issue #9, lib/layer.ts): with checkFinite, the first stage that produces a
 * NaN or Inf throws NumericsError naming the layer, the stage and the expert.
 */
import { MoEConfig, MoELayer, MoekitError, NumericsError, Tensor } from '../lib';
import { withLiveState } from './helpers/layer';
import { uniformTensor } from './helpers/random';

const config: MoEConfig = {
  hidden: 8,
  experts: [{ name: 'text', count: 2, ffnHidden: 6 }, { name: 'code', count: 3, ffnHidden: 4 }],
  sharedExperts: { count: 2, ffnHidden: 4 },
  activation: 'swiglu',
  router: { topK: 2 },
  losses: { balance: { coeff: 0.01 }, z: { coeff: 0.001 } },
  seed: 3,
};
const T = 24;

function caught(call: () => unknown): NumericsError {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(NumericsError);
    expect(error).toBeInstanceOf(MoekitError);
    return error as NumericsError;
  }
  throw new Error('expected a NumericsError');
}

/** The tokens routed to global expert e by an unchecked forward of x, ascending. */
function tokensOf(layer: MoELayer, x: Tensor, e: number): number[] {
  const out = layer.forward(x, { training: false });
  const tokens = out.routing.assignments.token.toArray();
  return Array.from(out.routing.assignments.expert.toArray()).flatMap((expert, a) => (expert === e ? [tokens[a]] : [])).sort((a, b) => a - b);
}

describe('numerics guard (checkFinite)', () => {
  const x = uniformTensor([T, 8], 7);

  test('a NaN in x: stage input, before any state changes, named by layer and position', () => {
    const layer = new MoELayer(config, { name: 'layer3', checkFinite: true });
    const bad = uniformTensor([T, 8], 7);
    (bad.view() as Float32Array)[5 * 8 + 2] = NaN;
    const error = caught(() => layer.forward(bad));
    expect(error.message).toBe('layer "layer3", stage input: x[5, 2] is NaN (checkFinite)');
    expect([error.layer, error.stage, error.token]).toEqual(['layer3', 'input', 5]);
    expect(layer.step).toBe(0);
  });

  test('a NaN row of router.weight: stage router.weight names the expert; the router does not run', () => {
    const layer = new MoELayer(config, { name: 'moe1', checkFinite: true });
    (layer.parameters()['router.weight'].view() as Float32Array)[3 * 8 + 1] = NaN;
    const error = caught(() => layer.forward(x));
    expect(error.stage).toBe('router.weight');
    expect(error.expert).toEqual({ group: 'code', index: 1 });
    expect(error.message).toMatch(/^layer "moe1", stage router\.weight: router\.weight row 3 \(expert code\[1\]\)/);
    expect(layer.step).toBe(0);
  });

  // DESIGN §4: router.bias and router.load must be finite; loadStateDict refuses others, and the
  // guard finds one that got there anyway (written through the live tensor) before the router runs.
  test.each([
    ['router.bias', NaN],
    ['router.load', Infinity],
    ['router.load', -Infinity],
  ] as const)('a non-finite %s entry (%s): the stage of that name names the entry and its expert, before the router runs (DESIGN §4)', (name, value) => {
    const sampled: MoEConfig = { ...config, router: { type: 'sampled', topK: 2 } };  // R10 reads the load
    const { layer, bias, load } = withLiveState(() => new MoELayer(sampled, { name: 'moe5', checkFinite: true }));
    const loadBefore = Array.from(load.toArray());
    ((name === 'router.bias' ? bias : load).view() as Float32Array)[3] = value;
    const error = caught(() => layer.forward(x));
    expect(error.message).toBe(`layer "moe5", stage ${name}: ${name}[3] is ${value} (expert code[1]) (checkFinite)`);
    expect([error.layer, error.stage, error.parameter, error.expert]).toEqual(['moe5', name, name, { group: 'code', index: 1 }]);
    expect(layer.step).toBe(0);  // the router did not run: no step, and the load estimate (R10) did not move
    const loadAfter = Array.from(load.toArray());
    loadAfter[3] = loadBefore[3];
    expect(loadAfter).toEqual(loadBefore);
  });

  test('a NaN weight of one routed expert: stage expert names that expert and its first token', () => {
    const layer = new MoELayer(config, { name: 'moe2' });
    const [token] = tokensOf(layer, x, 3);  // global expert 3 = code[1]
    expect(token).toBeDefined();
    (layer.parameters()['experts.code.w2'].view() as Float32Array)[1 * 8 * 4] = NaN;  // w2[1, 0, 0]
    const error = caught(() => layer.forward(x, { checkFinite: true }));
    expect(error.stage).toBe('expert');
    expect(error.expert).toEqual({ group: 'code', index: 1 });
    expect(error.token).toBe(token);
    expect(error.message).toContain(`y[${token}] is NaN or Inf after the routed experts; expert code[1] gives NaN or Inf on token ${token}`);
  });

  test('an overflowing expert (finite weights, Inf output): stage expert, one of its tokens', () => {
    const layer = new MoELayer(config, { name: 'moe2' });
    const tokens = tokensOf(layer, x, 0);
    for (const w of ['w1', 'w3']) (layer.parameters()[`experts.text.${w}`].view() as Float32Array).fill(1e30, 0, 6 * 8);  // expert text[0]: h ~ 1e60
    const error = caught(() => layer.forward(x, { checkFinite: true }));
    expect([error.stage, error.expert]).toEqual(['expert', { group: 'text', index: 0 }]);
    expect(tokens).toContain(error.token);  // silu(a1) overflows where a1 > 0 only
  });

  test('a NaN weight of a shared expert: stage shared, the shared expert named, every token affected', () => {
    const layer = new MoELayer(config, { checkFinite: true });
    (layer.parameters()['shared.w1'].view() as Float32Array)[4 * 8] = NaN;  // shared expert 1
    const error = caught(() => layer.forward(x));
    expect([error.layer, error.stage, error.expert, error.token]).toEqual(['moe', 'shared', { group: 'shared', index: 1 }, 0]);
  });

  test('after backward: a non-finite gradient names the parameter and the expert; a NaN in dy is stage input', () => {
    const layer = new MoELayer(config, { name: 'moe4', checkFinite: true });
    layer.forward(x);
    const dy = uniformTensor([T, 8], 8);
    (dy.view() as Float32Array)[9] = Infinity;
    expect(caught(() => layer.backward(dy)).message).toBe('layer "moe4", stage input: dy[1, 1] is Infinity (checkFinite)');
    (layer.grads()['experts.code.w3'].view() as Float32Array)[2 * 4 * 8 + 5] = NaN;  // an earlier micro-batch went wrong
    const error = caught(() => layer.backward(uniformTensor([T, 8], 8)));
    expect([error.stage, error.parameter, error.expert]).toEqual(['grad', 'experts.code.w3', { group: 'code', index: 2 }]);
    expect(error.message).toBe('layer "moe4", stage grad: grads()["experts.code.w3"][2, 0, 5] is NaN (expert code[2]) (checkFinite)');
  });

  test('a failed checked forward returns nothing to dispose and allows no backward', () => {
    const layer = new MoELayer(config);
    (layer.parameters()['shared.w2'].view() as Float32Array)[0] = Infinity;
    caught(() => layer.forward(x, { checkFinite: true }));
    expect(() => layer.backward(uniformTensor([T, 8], 8))).toThrow(/training forward first/);
  });

  test('off by default: non-finite values propagate without a scan', () => {
    const layer = new MoELayer(config);
    (layer.parameters()['shared.w2'].view() as Float32Array)[0] = NaN;
    const out = layer.forward(x);
    expect(Array.from(out.y.toArray()).some(Number.isNaN)).toBe(true);
  });

  test('options are checked', () => {
    expect(() => new MoELayer(config, { checkFinite: 'yes' as never })).toThrow(/options\.checkFinite must be a boolean/);
    expect(() => new MoELayer(config, { nmae: 'x' } as never)).toThrow(/options\.nmae is not an option/);
    expect(() => new MoELayer(config).forward(x, { checkFinite: 1 as never })).toThrow(/opts\.checkFinite must be a boolean/);
  });
});
