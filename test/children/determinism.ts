/**
 * Determinism probe, run by test/determinism.test.ts once per MOEKIT_NUM_THREADS: one seeded layer,
 * two training steps (forward, backward, AdamW step) on seeded inputs; prints the SHA-256 of y,
 * the routing weights, dx and every gradient of each step, and the threads the process runs.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import { AdamW, MoELayer, Tensor } from '../../lib';

const hash = (t: Tensor) => {
  const view = t.view();
  return createHash('sha256').update(new Uint8Array(view.buffer, view.byteOffset, view.byteLength)).digest('hex').slice(0, 16);
};

const layer = new MoELayer({
  hidden: 128,
  experts: [{ name: 'a', count: 6, ffnHidden: 192 }, { name: 'b', count: 2, ffnHidden: 96 }],
  sharedExperts: { count: 1, ffnHidden: 128 },
  activation: 'swiglu',
  router: { topK: 2, normalize: true },
  capacity: { factor: 1.25, policy: 'score' },
  losses: { balance: { coeff: 0.01 }, z: { coeff: 0.001 }, orthogonality: { coeff: 0.001, mode: 'crossGroup' } },
  seed: 11,
});
const optimizer = new AdamW(layer, { lr: 1e-3 });
const hashes: Record<string, string> = {};
for (let s = 0; s < 2; s++) {
  const x = Tensor.randn([384, 128], { seed: 100 + s });
  const dy = Tensor.randn([384, 128], { seed: 200 + s });
  layer.zeroGrad();
  const out = layer.forward(x);
  const { dx } = layer.backward(dy);
  hashes[`${s}.y`] = hash(out.y);
  hashes[`${s}.routing.weights`] = hash(out.routing.weights);
  hashes[`${s}.dx`] = hash(dx);
  hashes[`${s}.aux`] = String(out.aux);
  for (const [name, g] of Object.entries(layer.grads())) hashes[`${s}.grad.${name}`] = hash(g);
  optimizer.step();
  for (const [name, p] of Object.entries(layer.parameters())) hashes[`${s}.param.${name}`] = hash(p);
}
const threads = fs.readdirSync('/proc/self/task').length;
process.stdout.write(`${JSON.stringify({ hashes, threads })}\n`);
