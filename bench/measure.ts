/** Timing: warm-up runs, then the median of repeated runs (benchmarks only; no test asserts a time). */
export interface Timing {
  medianMs: number;
  minMs: number;
  runs: number;
  /** Every timed run, ascending. */
  timesMs: number[];
}

export function measure(run: () => void, opts: { warmup?: number; runs?: number; onRun?: () => void } = {}): Timing {
  const warmup = opts.warmup ?? 1;
  const runs = opts.runs ?? 5;
  for (let i = 0; i < warmup; i++) run();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    run();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
    opts.onRun?.();
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)], minMs: times[0], runs, timesMs: times };
}
