/**
 * DESIGN §4: "Nothing a JS value does while it is being read (getters, proxies) can free memory
 * that native code is using." Each case of test/children/reentrancy.ts runs in its own child
 * process (a use-after-free is a signal there): accessors and proxies on the array and object
 * arguments of the facade and the raw addon dispose tensors or the layer mid-read. Before the
 * bindings read every JavaScript value first, the layer cases and the forged-instanceof case
 * ended in SIGSEGV.
 */
import { runChild, tail } from './helpers/child';

interface Outcome { outcome: 'returned' | 'threw'; name?: string; message?: string; value?: unknown }

/** Case name → the outcome it must have: a typed error (class and message pattern) or a return value. */
const EXPECTED: [string, { name: string; message: RegExp } | { value: unknown }][] = [
  ['layer.forward: seqLens[1] disposes the layer on its 3rd read', { value: true }],
  ['layer.forward: seqLens[1] disposes the layer on its 1st read', { name: 'DisposedError', message: /router\.weight was disposed/ }],
  ['layer.forward: a Proxy seqLens disposes x', { name: 'DisposedError', message: /disposed/ }],
  ['native layer forward: seqLens[0] disposes router.weight', { name: 'DisposedError', message: /^the layer's tensor router\.weight was disposed$/ }],
  ['native layer forward: seqLens[1] disposes x', { name: 'DisposedError', message: /^x is a disposed tensor/ }],
  ['native layer constructor: reading params.groups disposes router.weight (already held)', { name: 'DisposedError', message: /router\.weight was disposed/ }],
  ['native layer constructor: reading spec.device disposes experts w2', { name: 'DisposedError', message: /w2 (was|is a) disposed/ }],
  ['Communicator.allToAllV: sendCounts[0] disposes t', { name: 'DisposedError', message: /disposed/ }],
  ['native allToAllV: sendCounts[0] disposes t', { name: 'DisposedError', message: /^t is a disposed tensor/ }],
  ['native groupedGemm: groupSizes[1] disposes a', { name: 'DisposedError', message: /^a is a disposed tensor/ }],
  ['native route: reading spec.router disposes x', { name: 'DisposedError', message: /^x is a disposed tensor/ }],
  ['native routeBackward: reading opts.bias disposes dWeights', { name: 'DisposedError', message: /^dWeights is a disposed tensor/ }],
  ['native adamwStep: reading config.eps disposes m', { name: 'DisposedError', message: /^m is a disposed tensor/ }],
  ['native fromData: shape[0] detaches the data buffer', { name: 'ShapeError', message: /data has 0 elements/ }],
  ['ops.groupedGemm: groupSizes[0] disposes w', { name: 'DisposedError', message: /disposed/ }],
  ['a replaced NativeTensor[Symbol.hasInstance] passes a communicator as a tensor', { name: 'ArgumentError', message: /^logits must be a native tensor/ }],
  // The setter runs after the work (the result object is built last): the disposed tensor is
  // the setter's own doing, and no memory in use was freed.
  ['an Object.prototype setter that disposes a result tensor while the result is built', { value: { disposedBySetter: true, keys: ['dWeights'] } }],
];

describe('arguments that run code while they are read', () => {
  test.each(EXPECTED)('%s', (name, expected) => {
    const run = runChild<Outcome>('reentrancy', { args: [name], timeoutMs: 60_000 });
    if (run.signal !== null || run.status !== 0 || !run.report) throw new Error(`child ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
    if ('value' in expected) {
      expect(run.report).toMatchObject({ outcome: 'returned', value: expected.value });
    } else {
      expect(run.report).toMatchObject({ outcome: 'threw', name: expected.name });
      expect(run.report.message).toMatch(expected.message);
    }
  });

  test('every case of the child is listed here', () => {
    const run = runChild<{ cases: string[] }>('reentrancy');
    expect(run.report?.cases.sort()).toEqual(EXPECTED.map(([name]) => name).sort());
  });
});
