/**
 * Leak check, run by test/leaks.test.ts with --expose-gc: a small layer trains for
 * MOEKIT_LEAK_STEPS steps (forward, backward, AdamW step, endStep), every input, output and
 * gradient tensor created and disposed within its step, plus a state-dict round trip through
 * safetensors bytes and a forward that fails the numerics guard every 100 steps. Prints the
 * addon's live bytes and the RSS after warm-up and at the end (after gc) as one JSON line.
 *
 * The loop yields to the event loop every YIELD_EVERY steps, as a training loop that awaits its
 * data does: Node-API runs the finalizers of collected native objects (the tensor wrappers, about
 * 2 KB each) from the event loop, so a loop that never yields holds every wrapper it made until it
 * does. Storage itself is freed by dispose() at once (liveBytes).
 */
import { AdamW, MoELayer, NumericsError, Tensor, liveBytes, parseSafetensors, serializeSafetensors } from '../../lib';

const STEPS = Number(process.env.MOEKIT_LEAK_STEPS ?? 2000);
const WARMUP = 200;
const YIELD_EVERY = 10;
const gc = (globalThis as unknown as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const layer = new MoELayer({
  hidden: 16,
  experts: [{ name: 'e', count: 4, ffnHidden: 32 }],
  sharedExperts: { count: 1, ffnHidden: 16 },
  activation: 'swiglu',
  router: { topK: 2, bias: true, biasUpdateRate: 0.01 },
  losses: { balance: { coeff: 0.01, scope: 'global' }, z: { coeff: 0.001 } },
  seed: 5,
});
const optimizer = new AdamW(layer, { lr: 1e-3 });
let numericsErrors = 0;

function step(i: number): void {
  const x = Tensor.randn([32, 16], { seed: 1000 + i });
  const dy = Tensor.randn([32, 16], { seed: 5000 + i, std: 0.1 });
  layer.zeroGrad();
  const out = layer.forward(x);
  const { dx } = layer.backward(dy);
  optimizer.step();
  layer.endStep();
  for (const t of [x, dy, dx, out.y, out.routing.indices, out.routing.weights, out.routing.keep, ...Object.values(out.routing.assignments)]) t.dispose();
  if (i % 100 === 0) {
    const state = layer.stateDict();
    const { tensors } = parseSafetensors(serializeSafetensors(state));
    layer.loadStateDict(tensors);
    for (const t of [...Object.values(state), ...Object.values(tensors)]) t.dispose();
    const huge = Tensor.from(new Float32Array(32 * 16).fill(1e30), [32, 16]);
    try {
      layer.forward(huge, { checkFinite: true, training: false });
    } catch (error) {
      if (!(error instanceof NumericsError)) throw error;
      numericsErrors++;
    }
    huge.dispose();
  }
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

async function measure(): Promise<{ liveBytes: number; rss: number }> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await turn();
  }
  return { liveBytes: liveBytes(), rss: process.memoryUsage().rss };
}

async function main(): Promise<void> {
  for (let i = 0; i < WARMUP; i++) {
    step(i);
    if (i % YIELD_EVERY === 0) await turn();
  }
  const baseline = await measure();
  const started = Date.now();
  for (let i = WARMUP; i < WARMUP + STEPS; i++) {
    step(i);
    if (i % YIELD_EVERY === 0) await turn();
  }
  const end = await measure();
  process.stdout.write(`${JSON.stringify({ steps: STEPS, baseline, end, numericsErrors, ms: Date.now() - started })}\n`);
}

void main();
