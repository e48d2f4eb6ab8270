/**
 * Determinism on the CPU backend (issue #9): the same seed and inputs give bit-identical y,
 * routing weights, dx, every gradient and the parameters after AdamW, across runs and for 1, 2
 * and 3 threads (MOEKIT_NUM_THREADS; native/cpu/thread_pool.h fixes the chunking, not the thread
 * count). Each run is its own process, as the pool is sized once per process.
 */
import { runChild, tail } from './helpers/child';

interface Probe {
  hashes: Record<string, string>;
  threads: number;
}

function probe(threads: number): Probe {
  const run = runChild<Probe>('determinism', { env: { MOEKIT_NUM_THREADS: String(threads) } });
  if (run.signal !== null || run.status !== 0 || !run.report) throw new Error(`determinism child (${threads} threads) ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
  return run.report;
}

test('same seed and inputs: bit-identical outputs, gradients and AdamW steps across runs and 1, 2, 3 threads', () => {
  const runs = [probe(1), probe(1), probe(2), probe(3)];
  const reference = runs[0].hashes;
  expect(Object.keys(reference).length).toBeGreaterThan(20);
  for (const run of runs.slice(1)) expect(run.hashes).toEqual(reference);
  // the setting took effect: more threads asked for, more threads in the process (pool workers)
  expect(runs[2].threads).toBeGreaterThan(runs[0].threads);
  expect(runs[3].threads).toBeGreaterThan(runs[2].threads);
}, 120_000);
