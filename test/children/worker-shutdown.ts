/**
 * Worker threads that end during a call (DESIGN §4: "a worker or process that ends during a call
 * ends cleanly"), run in a child process by test/worker-shutdown.test.ts so an abort is seen as a
 * signal.
 *
 * argv[2] is the mode:
 *   terminate  ROUNDS times: start WORKERS workers that each train a layer in a loop (forward,
 *              backward, AdamW, state dict), wait until all are inside their loops, then terminate
 *              them one by one after a random delay; the process then trains a layer of its own
 *              (the addon still works in the main thread) and prints the JSON report.
 *   exit       start WORKERS workers, wait until they are inside their loops, then process.exit(0)
 *              after a random delay while they run.
 * The worker side of both is this same file, with workerData set.
 *
 * Environment: MOEKIT_SHUTDOWN_SEED (the delays), MOEKIT_SHUTDOWN_ROUNDS (terminate, default 6),
 * MOEKIT_SHUTDOWN_WORKERS (default 3), MOEKIT_SHUTDOWN_DEVICE (the layers' device, default cpu;
 * 'cuda:0' with MOEKIT_EMULATE_CUDA=1 runs them on the emulated device).
 */
import * as path from 'path';
import { Worker, isMainThread, parentPort, workerData } from 'worker_threads';
import { AdamW, MoELayer, Tensor, liveBytes } from '../../lib';

const REGISTER = path.join(__dirname, 'register.js');
const DEVICE = (process.env.MOEKIT_SHUTDOWN_DEVICE ?? 'cpu') as 'cpu' | `cuda:${number}`;

/** One training step of a layer whose forward takes a few milliseconds. */
function trainStep(layer: MoELayer, optimizer: AdamW, x: Tensor, seqLens: number[]): number {
  const out = layer.forward(x, { seqLens });
  const dy = Tensor.randn(out.y.shape, { seed: 5, device: DEVICE });
  const { dx } = layer.backward(dy);
  optimizer.step();
  layer.zeroGrad();
  const sum = (out.y.toArray() as Float32Array).reduce((a, b) => a + b, 0);
  const { indices, weights, keep, assignments } = out.routing;
  for (const t of [out.y, dy, dx, indices, weights, keep, ...Object.values(assignments), ...Object.values(layer.stateDict())]) t.dispose();
  return sum;
}

function buildLayer(seed: number): { layer: MoELayer; optimizer: AdamW; x: Tensor } {
  const layer = new MoELayer({
    hidden: 64, experts: [{ name: 'e', count: 8, ffnHidden: 96 }], activation: 'swiglu', router: { topK: 2 },
    losses: { balance: { coeff: 0.01, scope: 'sequence' } }, seed, device: DEVICE,
  });
  return { layer, optimizer: new AdamW(layer, { lr: 1e-3 }), x: Tensor.randn([256, 64], { seed, device: DEVICE }) };
}

function workerMain(): void {
  const { layer, optimizer, x } = buildLayer(workerData.index + 1);
  let steps = 0;
  for (;;) {
    trainStep(layer, optimizer, x, [128, 128]);
    if (++steps === 2) parentPort?.postMessage('running');
  }
}

/** A small deterministic generator for the delays (the seed is in the report). */
function delays(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s % 25;
  };
}

function startWorkers(count: number): Promise<Worker[]> {
  return Promise.all(Array.from({ length: count }, (_, index) => new Promise<Worker>((resolve, reject) => {
    const worker = new Worker(`require(${JSON.stringify(REGISTER)}); require(${JSON.stringify(__filename)});`, { eval: true, workerData: { index } });
    worker.once('message', () => resolve(worker));
    worker.once('error', reject);
  })));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const mode = process.argv[2];
  const seed = Number(process.env.MOEKIT_SHUTDOWN_SEED ?? 1);
  const workers = Number(process.env.MOEKIT_SHUTDOWN_WORKERS ?? 3);
  const next = delays(seed);
  if (mode === 'exit') {
    await startWorkers(workers);
    await sleep(next());
    process.exit(0);
  }
  if (mode !== 'terminate') throw new Error(`unknown mode ${mode}`);
  const rounds = Number(process.env.MOEKIT_SHUTDOWN_ROUNDS ?? 6);
  const exitCodes: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const started = await startWorkers(workers);
    for (const worker of started) {
      await sleep(next());
      exitCodes.push(await worker.terminate());
    }
  }
  // A terminated worker's environment frees its tensors as it is torn down.
  const afterWorkers = liveBytes();
  const { layer, optimizer, x } = buildLayer(99);
  const first = trainStep(layer, optimizer, x, [256]);
  const second = trainStep(layer, optimizer, x, [256]);
  layer.dispose();
  optimizer.dispose();
  x.dispose();
  process.stdout.write(`${JSON.stringify({ mode, device: DEVICE, seed, rounds, workers, exitCodes, afterWorkers, mainSteps: [first, second], liveBytes: liveBytes() })}\n`);
}

if (isMainThread) {
  main().catch((error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(3);
  });
} else {
  workerMain();
}
