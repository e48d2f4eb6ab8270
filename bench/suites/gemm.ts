/**
 * gemm: grouped GEMM GFLOP/s of the expert matmuls of the reference shapes, against the rate of
 * one large single GEMM measured in the same run (the machine's sgemm "peak" for this library).
 */
import { ops, Tensor } from '../../lib';
import { measure } from '../measure';
import { Progress } from '../progress';
import { LAYER_SHAPES, scaled } from '../shapes';
import { Row } from '../table';

function groupedRate(rows: number[], n: number, k: number, seed: number, runs: number): number {
  const m = rows.reduce((a, b) => a + b, 0);
  const a = Tensor.randn([m, k], { seed });
  const w = Tensor.randn([rows.length, n, k], { seed: seed + 1 });
  const timing = measure(() => ops.groupedGemm(a, w, rows).output.dispose(), { runs });
  a.dispose();
  w.dispose();
  return (2 * m * n * k) / (timing.medianMs * 1e6);
}

export function gemmSuite(quick: boolean): Row[] {
  const runs = quick ? 2 : 5;
  const cases = LAYER_SHAPES.flatMap((shape) => {
    const s = scaled(shape, quick);
    const rows = Array(s.experts).fill((s.tokens * s.topK) / s.experts);
    return [
      { label: `${s.name} up (w1/w3)`, rows, n: s.ffn, k: s.hidden },
      { label: `${s.name} down (w2)`, rows, n: s.hidden, k: s.ffn },
    ];
  });
  const progress = new Progress(cases.length + 1, 'gemm');
  const peakSize = quick ? 1024 : 2048;
  const peak = groupedRate([peakSize], peakSize, peakSize, 1, runs);
  progress.tick('single GEMM');
  const result: Row[] = [{ case: `single GEMM ${peakSize}³`, 'rows/group': peakSize, N: peakSize, K: peakSize, 'GFLOP/s': peak, '% of single': 100 }];
  for (const c of cases) {
    const rate = groupedRate(c.rows, c.n, c.k, 7, runs);
    result.push({ case: c.label, 'rows/group': c.rows[0], N: c.n, K: c.k, 'GFLOP/s': rate, '% of single': (100 * rate) / peak });
    progress.tick(c.label);
  }
  progress.finish();
  return result;
}
