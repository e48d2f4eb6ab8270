/**
 * No leaks over a long training run (issue #9): test/children/leaks.ts trains a small layer with
 * AdamW for 2,000 steps after a 200-step warm-up, creating and disposing every tensor each step,
 * in a child process with --expose-gc.
 */
import { runChild, tail } from './helpers/child';

interface LeakReport {
  steps: number;
  baseline: { liveBytes: number; rss: number };
  end: { liveBytes: number; rss: number };
  numericsErrors: number;
}

/** RSS may grow by allocator and V8 heap settling, not with the step count (2,000 steps). */
const RSS_GROWTH_LIMIT = 20 * 1024 * 1024;

test('2,000 forward/backward/AdamW steps: liveBytes returns exactly to its baseline, RSS grows < 20 MB', () => {
  const run = runChild<LeakReport>('leaks', { nodeArgs: ['--expose-gc'], env: { MOEKIT_LEAK_STEPS: '2000' } });
  if (run.signal !== null || run.status !== 0 || !run.report) throw new Error(`leak child ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
  const { baseline, end, numericsErrors, steps } = run.report;
  expect(steps).toBe(2000);
  expect(numericsErrors).toBe((200 + 2000) / 100);  // the failing checked forwards (every 100 steps, warm-up included) leak nothing either
  expect(end.liveBytes).toBe(baseline.liveBytes);
  expect(end.rss - baseline.rss).toBeLessThan(RSS_GROWTH_LIMIT);
}, 120_000);
