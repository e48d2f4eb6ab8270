import { MoELayer, MoEOutput, Tensor } from '../../lib';

/** Σ y·dy accumulated in float64, plus aux: the objective whose gradient backward() returns. */
export function objective(out: MoEOutput, dy: Float32Array): number {
  const y = out.y.toArray();
  let sum = 0;
  for (let i = 0; i < y.length; i++) sum += y[i] * dy[i];
  return sum + out.aux;
}

/** The routing decisions of a forward, as one comparable string. */
export function decisions(out: MoEOutput): string {
  const a = out.routing.assignments;
  return [out.routing.indices, out.routing.keep, a.token, a.expert].map((t) => Array.from(t.toArray()).join(',')).join('|');
}

/**
 * A layer built by `make`, with its live router.bias and router.load. The
 * public API hands out copies of the state (stateDict()), so this keeps the [E] tensors the
 * constructor creates for it (lib/layer.ts #allocate: Tensor.zeros([E]) is router.bias,
 * Tensor.from(1/E, [E]) router.load; no other [E] tensor is made there), and checks they are the
 * layer's by writing through them.
 */
export function withLiveState(make: () => MoELayer): { layer: MoELayer; bias: Tensor; load: Tensor } {
  const zeros = jest.spyOn(Tensor, 'zeros');
  const from = jest.spyOn(Tensor, 'from');
  let layer: MoELayer;
  let made: Tensor[][];
  try {
    layer = make();
    made = [zeros, from].map((spy) => spy.mock.results.map((r) => r.value as Tensor).filter((t) => t.shape.length === 1 && t.shape[0] === layer.experts));
  } finally {
    zeros.mockRestore();
    from.mockRestore();
  }
  const [[bias], [load]] = made;
  for (const [name, t] of [['router.bias', bias], ['router.load', load]] as const) {
    const view = t.view() as Float32Array;
    const kept = view[0];
    view[0] = 0.625;
    const seen = layer.stateDict()[name].toArray()[0];
    view[0] = kept;
    if (seen !== 0.625) throw new Error(`withLiveState: the tensor taken for ${name} is not the layer's`);
  }
  return { layer, bias, load };
}
