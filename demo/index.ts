/**
 * npm run demo: micro-batch (L1) against global-batch (L2) load balancing, on the CPU.
 *
 * The same 2-layer MoE classifier (demo/model.ts: 8 swiglu experts per layer, top-2 softmax
 * routing, balance and z losses) is trained twice with AdamW on the synthetic 4-domain, 8-class
 * task (demo/data.ts), from the same initial weights on the same data. Every micro-batch holds
 * tokens of one domain only; an optimiser step accumulates the gradients of WINDOW micro-batches
 * (each domain WINDOW/DOMAINS times, in a shuffled order) and then calls endStep() on both layers.
 * The runs differ in one setting, losses.balance.scope: 'micro' balances every micro-batch (L1),
 * so each single-domain micro-batch must spread over all experts; 'global' counts the load over
 * the window (L2), which leaves the experts free to specialise by domain while the whole batch
 * stays balanced (Qwen, "Demons in the Detail").
 *
 * Printed: progress, then at step 1 and every PRINT_EVERY steps the cross-entropy, accuracy, aux
 * losses and each layer's load over the window; at the end, on held-out single-domain batches,
 * cross-entropy, accuracy, balance (maxVio per micro-batch and over all of them), and expert–domain
 * specialisation: mutual information I(expert; domain) and the share of each domain's selections
 * on its top-2 experts. Written to reports/demo/ (under the working directory): per run an
 * ExpertMonitor heatmap (SVG + HTML) and JSONL of per-micro-batch stats, and summary.json.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Progress } from '../bench/progress';
import { AdamW, ExpertStats, liveBytes } from '../lib';
import { ExpertMonitor, mergeExpertStats } from '../lib/monitor';
import { DOMAINS, DomainTask, uniformStream } from './data';
import { BalanceScope, EXPERTS, MoEClassifier, TOP_K } from './model';
import { loadLine, mutualInformation, topExpertShare, usageCounts, usageTable } from './report';

const STEPS = 300;
const WINDOW = 8;
const MICRO_TOKENS = 64;
const PRINT_EVERY = 50;
const BALANCE_COEFF = 0.03;
const HELD_OUT_BATCHES_PER_DOMAIN = 4;
const HELD_OUT_TOKENS = 256;
/** Heatmap columns: the micro-batches of the last HEATMAP_STEPS optimiser steps. */
const HEATMAP_STEPS = 20;
const OUT_DIR = path.resolve('reports', 'demo');

interface Run {
  name: string;
  scope: BalanceScope;
  what: string;
}

const RUNS: Run[] = [
  { name: 'L1', scope: 'micro', what: 'micro-batch balance (L1)' },
  { name: 'L2', scope: 'global', what: 'global-batch balance (L2)' },
];

interface LayerResult {
  maxVioMicro: number;
  maxVioGlobal: number;
  mutualInformation: number;
  topShare: number[];
  usage: number[][];
}

interface RunResult {
  run: string;
  scope: BalanceScope;
  /** Mean training cross-entropy over the last PRINT_EVERY steps. */
  trainLoss: number;
  heldOutLoss: number;
  heldOutAccuracy: number;
  layers: LayerResult[];
  seconds: number;
}

const progress = new Progress(RUNS.length * STEPS, 'training');

/** console.log that first clears the progress bar's line when stderr is a terminal. */
function say(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${' '.repeat(100)}\r`);
  console.log(text);
}

/** The window's domains: each domain WINDOW/DOMAINS times, shuffled (Fisher–Yates). */
function windowDomains(uniform: () => number): number[] {
  const order = Array.from({ length: WINDOW }, (_, i) => i % DOMAINS);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(uniform() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

function train(run: Run, task: DomainTask): RunResult {
  const started = process.hrtime.bigint();
  const stream = uniformStream(2);
  const model = new MoEClassifier(3, run.scope, BALANCE_COEFF);
  const optimizer = new AdamW(model, { lr: 3e-3, weightDecay: 0.01 });
  const monitor = new ExpertMonitor({ historyLength: STEPS * WINDOW });
  say(`\n== run ${run.name}: ${run.what}, losses.balance = { coeff: ${BALANCE_COEFF}, scope: '${run.scope}' } ==`);
  let lossSum = 0;
  let accSum = 0;
  let micros = 0;
  let lastLoss = 0;
  for (let step = 1; step <= STEPS; step++) {
    model.zeroGrad();
    const window: ExpertStats[][] = [[], []];
    /** Per layer, means over the window's micro-batches: aux, balance, z, maxVio. */
    const means = [0, 1].map(() => ({ aux: 0, balance: 0, z: 0, maxVio: 0 }));
    for (const domain of windowDomains(stream)) {
      const batch = task.sample(MICRO_TOKENS, stream, domain);
      const report = model.trainStep(batch.x, batch.labels);
      report.layers.forEach((l, i) => {
        monitor.observe(`moe${i + 1}`, l.stats);
        window[i].push(l.stats);
        means[i].aux += l.aux / WINDOW;
        means[i].balance += l.balance / WINDOW;
        means[i].z += l.z / WINDOW;
        means[i].maxVio += l.stats.maxVio / WINDOW;
      });
      lossSum += report.loss;
      accSum += report.accuracy;
      micros++;
    }
    optimizer.step();
    model.moe1.endStep();
    model.moe2.endStep();
    progress.tick(`${run.name} step ${step}`);
    if (step % PRINT_EVERY === 0 || step === 1) {
      lastLoss = lossSum / micros;
      const aux = means.map((m, i) => `moe${i + 1} aux ${m.aux.toFixed(4)} (bal ${m.balance.toFixed(4)} z ${m.z.toFixed(4)})`).join('  ');
      say(`step ${String(step).padStart(3)}  ce(avg) ${lastLoss.toFixed(4)}  acc ${(100 * accSum / micros).toFixed(1).padStart(5)}%  ${aux}`);
      window.forEach((stats, i) => say(`          ${loadLine(`moe${i + 1} window`, mergeExpertStats(stats))}  micro-batch maxVio ${means[i].maxVio.toFixed(2)}`));
      lossSum = accSum = micros = 0;
    }
  }

  const heldOut = evaluate(model, task);
  const base = path.join(OUT_DIR, run.name.toLowerCase());
  monitor.renderHeatmap(`${base}-heatmap.svg`, {
    title: `${run.what}: load of each single-domain micro-batch, last ${HEATMAP_STEPS} optimiser steps (step = micro-batch)`,
    last: HEATMAP_STEPS * WINDOW,
  });
  monitor.writeJsonl(`${base}-stats.jsonl`);
  optimizer.dispose();
  return {
    run: run.name,
    scope: run.scope,
    trainLoss: lastLoss,
    ...heldOut,
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
}

/** Held-out single-domain batches: loss, accuracy, balance and specialisation of each layer. */
function evaluate(model: MoEClassifier, task: DomainTask): Omit<RunResult, 'run' | 'scope' | 'trainLoss' | 'seconds'> {
  const stream = uniformStream(4);
  const stats: ExpertStats[][] = [[], []];
  let loss = 0;
  let correct = 0;
  let tokens = 0;
  const counts = [0, 1].map(() => Array.from({ length: DOMAINS }, () => new Array<number>(EXPERTS).fill(0)));
  for (let b = 0; b < HELD_OUT_BATCHES_PER_DOMAIN; b++) {
    for (let d = 0; d < DOMAINS; d++) {
      const batch = task.sample(HELD_OUT_TOKENS, stream, d);
      const r = model.evaluate(batch.x, batch.labels);
      loss += r.loss * HELD_OUT_TOKENS;
      correct += r.correct;
      tokens += HELD_OUT_TOKENS;
      r.stats.forEach((s, i) => stats[i].push(s));
      r.experts.forEach((experts, i) => {
        const c = usageCounts(batch.domains, experts);
        c.forEach((row, dd) => row.forEach((n, e) => (counts[i][dd][e] += n)));
      });
    }
  }
  return {
    heldOutLoss: loss / tokens,
    heldOutAccuracy: correct / tokens,
    layers: stats.map((list, i) => ({
      maxVioMicro: list.reduce((n, s) => n + s.maxVio, 0) / list.length,
      maxVioGlobal: mergeExpertStats(list).maxVio,
      mutualInformation: mutualInformation(counts[i]),
      topShare: topExpertShare(counts[i]),
      usage: counts[i],
    })),
  };
}

const started = process.hrtime.bigint();
const task = new DomainTask(1);
say(`moekit demo: ${RUNS.map((r) => r.what).join(' vs ')}`);
say(`${STEPS} optimiser steps per run; a step = ${WINDOW} micro-batches of ${MICRO_TOKENS} tokens, each micro-batch from one of ${DOMAINS} domains`);
const results = RUNS.map((run) => train(run, task));
progress.finish();

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const row = (label: string, value: (r: RunResult) => string) => `${label.padEnd(44)}${results.map((r) => value(r).padStart(12)).join('')}`;
say(`\n== held-out: ${HELD_OUT_BATCHES_PER_DOMAIN * DOMAINS} single-domain batches of ${HELD_OUT_TOKENS} tokens ==`);
say(row('', (r) => `${r.run} ${r.scope}`));
say(row('cross-entropy', (r) => r.heldOutLoss.toFixed(4)));
say(row('accuracy', (r) => `${(100 * r.heldOutAccuracy).toFixed(1)}%`));
for (const i of [0, 1]) {
  say(row(`layer ${i + 1} maxVio per micro-batch (mean)`, (r) => r.layers[i].maxVioMicro.toFixed(3)));
  say(row(`layer ${i + 1} maxVio over all held-out tokens`, (r) => r.layers[i].maxVioGlobal.toFixed(3)));
  say(row(`layer ${i + 1} I(expert; domain), bits (max 2)`, (r) => r.layers[i].mutualInformation.toFixed(3)));
  say(row(`layer ${i + 1} domain share on its top-${TOP_K} experts`, (r) => `${(100 * mean(r.layers[i].topShare)).toFixed(1)}%`));
}
say(row('wall time', (r) => `${r.seconds.toFixed(1)} s`));
for (const r of results) {
  for (const i of [0, 1]) {
    say(`\n${r.run} ${r.scope}: layer ${i + 1} expert usage by domain (% of the domain's top-${TOP_K} selections)`);
    say(usageTable(r.layers[i].usage));
  }
}

const [l1, l2] = results;
const better = (a: number, b: number, lowerIsBetter: boolean) => (lowerIsBetter ? a < b : a > b);
say('\nverdict (this run):');
say(`  specialisation (MI, layer 1 / layer 2): ${[0, 1].map((i) => (better(l2.layers[i].mutualInformation, l1.layers[i].mutualInformation, false) ? 'L2 higher' : 'L1 higher')).join(' / ')}`);
say(`  held-out cross-entropy: ${better(l2.heldOutLoss, l1.heldOutLoss, true) ? 'L2 lower' : 'L1 lower'} (L1 ${l1.heldOutLoss.toFixed(4)}, L2 ${l2.heldOutLoss.toFixed(4)})`);
say(`  global balance (maxVio over all held-out tokens, lower = more even): ${[0, 1].map((i) => `layer ${i + 1} ${better(l2.layers[i].maxVioGlobal, l1.layers[i].maxVioGlobal, true) ? 'L2' : 'L1'} more even`).join(', ')}`);

fs.mkdirSync(OUT_DIR, { recursive: true });
fs.writeFileSync(path.join(OUT_DIR, 'summary.json'), JSON.stringify({ steps: STEPS, window: WINDOW, microTokens: MICRO_TOKENS, balanceCoeff: BALANCE_COEFF, results }, null, 2) + '\n');
say(`\nreports written to ${OUT_DIR}/: ${fs.readdirSync(OUT_DIR).sort().join(', ')}`);
say(`native tensor memory still held: ${(liveBytes() / 1024).toFixed(0)} KiB (the parameters and their gradients)`);
say(`wall time: ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(2)} s`);
