/** permute: ops.permute + ops.unpermute (dispatch and weighted combine) bandwidth on the reference shapes. */
import { ops, Tensor } from '../../lib';
import { measure } from '../measure';
import { Progress } from '../progress';
import { LAYER_SHAPES, scaled } from '../shapes';
import { Row } from '../table';

export function permuteSuite(quick: boolean): Row[] {
  const progress = new Progress(LAYER_SHAPES.length, 'permute');
  const rows = LAYER_SHAPES.map((shape) => {
    const s = scaled(shape, quick);
    const x = Tensor.randn([s.tokens, s.hidden], { seed: 1 });
    const experts = Tensor.from(Int32Array.from({ length: s.tokens * s.topK }, (_, i) => (i * 7919) % s.experts), [s.tokens, s.topK]);
    const n = s.tokens * s.topK;
    const weights = Tensor.from(new Float32Array(n).fill(1 / s.topK), [n]);
    let permuteMs = 0;
    const permuted = ops.permute(x, experts, s.experts);
    const timingPermute = measure(() => {
      const p = ops.permute(x, experts, s.experts);
      p.output.dispose();
    }, { runs: quick ? 2 : 5 });
    permuteMs = timingPermute.medianMs;
    const timingCombine = measure(() => ops.unpermute(permuted.output, permuted.rowToken, weights, s.tokens).output.dispose(), { runs: quick ? 2 : 5 });
    const bytes = 2 * n * s.hidden * 4;  // each row read once and written once
    progress.tick(s.name);
    return {
      shape: s.name,
      rows: n,
      'permute ms': permuteMs,
      'permute GB/s': bytes / (permuteMs * 1e6),
      'combine ms': timingCombine.medianMs,
      'combine GB/s': bytes / (timingCombine.medianMs * 1e6),
    };
  });
  progress.finish();
  return rows;
}
