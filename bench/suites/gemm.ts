/**
 * gemm: grouped GEMM GFLOP/s of the expert matmuls of the reference shapes, against the rate of
 * one large single GEMM measured in the same run (the machine's sgemm "peak" for this library).
 * Column "bf16 (CPU reference)": ops.groupedGemm on bf16 a and w (converted outside the timing):
 * their values widened to f32 and the f32 GEMM, the bf16 mode's CPU path, not a bf16 kernel.
 * Column "fp8 (CPU reference)": ops.groupedGemmFp8 on the same shapes (inputs quantised in 1×128 /
 * 128×128 blocks outside the timing) — the float64 oracle of native/cpu/fp8.h, not a fast path.
 * On a GPU these columns would be the tensor-core kernels' TFLOPS; there is none here.
 */
import { ops, Tensor } from '../../lib';
import { measure } from '../measure';
import { Progress } from '../progress';
import { LAYER_SHAPES, scaled } from '../shapes';
import { Row } from '../table';

function groupedRate(rows: number[], n: number, k: number, seed: number, runs: number, dtype: 'f32' | 'bf16' = 'f32'): number {
  const m = rows.reduce((a, b) => a + b, 0);
  const x = Tensor.randn([m, k], { seed });
  const v = Tensor.randn([rows.length, n, k], { seed: seed + 1 });
  const a = dtype === 'f32' ? x : x.to(dtype);
  const w = dtype === 'f32' ? v : v.to(dtype);
  const timing = measure(() => ops.groupedGemm(a, w, rows).output.dispose(), { runs });
  for (const t of new Set([x, v, a, w])) t.dispose();
  return (2 * m * n * k) / (timing.medianMs * 1e6);
}

function fp8Rate(rows: number[], n: number, k: number, seed: number, runs: number): number {
  const m = rows.reduce((a, b) => a + b, 0);
  const x = Tensor.randn([m, k], { seed });
  const w = Tensor.randn([rows.length, n, k], { seed: seed + 1 });
  const a = ops.quantizeFp8(x, { block: [1, 128] });
  const b = ops.quantizeFp8(w, { block: [128, 128] });
  const timing = measure(() => ops.groupedGemmFp8(a, b, rows).dispose(), { runs });
  for (const t of [x, w, a.q, a.scales, b.q, b.scales]) t.dispose();
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
  const result: Row[] = [
    {
      case: `single GEMM ${peakSize}³`, 'rows/group': peakSize, N: peakSize, K: peakSize, 'GFLOP/s': peak, '% of single': 100,
      'bf16 (CPU reference)': groupedRate([peakSize], peakSize, peakSize, 1, runs, 'bf16'),
      'fp8 (CPU reference)': fp8Rate([peakSize], peakSize, peakSize, 1, runs),
    },
  ];
  progress.tick('single GEMM');
  for (const c of cases) {
    const rate = groupedRate(c.rows, c.n, c.k, 7, runs);
    result.push({
      case: c.label, 'rows/group': c.rows[0], N: c.n, K: c.k, 'GFLOP/s': rate, '% of single': (100 * rate) / peak,
      'bf16 (CPU reference)': groupedRate(c.rows, c.n, c.k, 7, runs, 'bf16'),
      'fp8 (CPU reference)': fp8Rate(c.rows, c.n, c.k, 7, runs),
    });
    progress.tick(c.label);
  }
  progress.finish();
  return result;
}
