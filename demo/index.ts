/**
 * npm run demo: a small real training job on the CPU. Trains a 2-layer MoE classifier
 * (demo/model.ts: 8 swiglu experts per layer, top-2 softmax routing, balance and z losses) with
 * AdamW on a synthetic 4-domain, 8-class task (demo/data.ts), 256 tokens of mixed domains a step.
 * At step 1 and every 25 steps it prints the cross-entropy (mean since the last print), the
 * batch accuracy, each layer's aux losses and per-expert load; at the end the accuracy on fresh
 * held-out tokens, how layer 1 spreads each domain over its experts, and the wall time.
 */
import { AdamW, liveBytes } from '../lib';
import { DomainTask, uniformStream } from './data';
import { MoEClassifier } from './model';
import { loadLine, usageTable } from './report';

const STEPS = 300;
const PRINT_EVERY = 25;
const TOKENS = 256;
const HELD_OUT_TOKENS = 4096;

const started = process.hrtime.bigint();
const task = new DomainTask(1);
const trainStream = uniformStream(2);
const model = new MoEClassifier(3);
const optimizer = new AdamW(model, { lr: 3e-3, weightDecay: 0.01 });

console.log(`training ${STEPS} steps of ${TOKENS} tokens; ${Object.values(model.parameters()).reduce((n, t) => n + t.numel, 0)} parameters`);
let lossSum = 0;
let lossSteps = 0;
for (let step = 1; step <= STEPS; step++) {
  const batch = task.sample(TOKENS, trainStream);
  const report = model.trainStep(batch.x, batch.labels);
  optimizer.step();
  model.moe1.endStep();
  model.moe2.endStep();
  lossSum += report.loss;
  lossSteps++;
  if (step % PRINT_EVERY === 0 || step === 1) {
    const aux = report.layers.map((l, i) => `L${i + 1} aux ${l.aux.toFixed(4)} (bal ${l.balance.toFixed(4)} z ${l.z.toFixed(4)})`).join('  ');
    console.log(`step ${String(step).padStart(3)}  ce(avg) ${(lossSum / lossSteps).toFixed(4)}  acc ${(100 * report.accuracy).toFixed(1).padStart(5)}%  ${aux}`);
    report.layers.forEach((l, i) => console.log(`          ${loadLine(`L${i + 1} load`, l.stats)}`));
    lossSum = 0;
    lossSteps = 0;
  }
}

const heldOut = task.sample(HELD_OUT_TOKENS, uniformStream(4));
const { predictions, experts1 } = model.predict(heldOut.x);
const correct = predictions.reduce((n, p, t) => n + (p === heldOut.labels[t] ? 1 : 0), 0);
console.log(`\nheld-out accuracy: ${(100 * correct / HELD_OUT_TOKENS).toFixed(1)}% of ${HELD_OUT_TOKENS} fresh tokens`);
console.log('layer 1 expert usage by domain (% of the domain\'s top-2 selections):');
console.log(usageTable(heldOut.domains, experts1));
optimizer.dispose();
console.log(`native tensor memory still held: ${(liveBytes() / 1024).toFixed(0)} KiB (the parameters and their gradients)`);
console.log(`wall time: ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(2)} s`);
