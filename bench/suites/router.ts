/** router: ops.route (logits, softmax, top-k, weights) tokens/s on the reference shapes. */
import { ops, Tensor } from '../../lib';
import { measure } from '../measure';
import { Progress } from '../progress';
import { LAYER_SHAPES, scaled } from '../shapes';
import { Row } from '../table';

export function routerSuite(quick: boolean): Row[] {
  const progress = new Progress(LAYER_SHAPES.length, 'router');
  const rows = LAYER_SHAPES.map((shape) => {
    const s = scaled(shape, quick);
    const x = Tensor.randn([s.tokens, s.hidden], { seed: 1 });
    const w = Tensor.randn([s.experts, s.hidden], { seed: 2, std: 0.02 });
    const timing = measure(() => {
      const r = ops.route(x, w, { topK: s.topK, score: 'softmax' });
      for (const t of [r.indices, r.weights, r.keep, r.counts, r.accepted]) t.dispose();
    }, { runs: quick ? 2 : 5 });
    progress.tick(s.name);
    return { shape: s.name, T: s.tokens, H: s.hidden, E: s.experts, k: s.topK, 'ms': timing.medianMs, 'tokens/s': Math.round((s.tokens * 1000) / timing.medianMs) };
  });
  progress.finish();
  return rows;
}
