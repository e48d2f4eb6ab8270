/**
 * Two layers on two emulated devices in one process (DESIGN §2b: every native call makes its
 * device current), run by test/two-devices.test.ts with MOEKIT_EMULATE_CUDA=1 and
 * MOEKIT_EMU_DEVICES=2. The same config is trained on cuda:0, cuda:1 and the cpu, the calls
 * interleaved so the current device changes between every two of them; a stage of one layer that
 * ran on the other device would be caught by the emulator (a kernel given another device's memory
 * is a KernelFault, or an abort when reached through a stored pointer). The last stdout line is the
 * report: per step the largest relative difference of each device's y and parameters from the
 * cpu's, and each device's cuda.stats.
 *
 * With argv[2] 'default-device' (and MOEKIT_DEVICE set by the parent) it reports instead where
 * 'cuda' lands: the device of a tensor and of a layer made with device 'cuda', and the launches
 * each device saw while that layer ran a forward.
 */
import { AdamW, MoEConfig, MoELayer, Tensor, cuda } from '../../lib';

const STEPS = 3;
const config: MoEConfig = {
  hidden: 8, experts: [{ name: 'e', count: 4, ffnHidden: 6 }], sharedExperts: { count: 1, ffnHidden: 4 }, activation: 'swiglu',
  router: { topK: 2, bias: true }, losses: { balance: { coeff: 0.01, scope: 'global' } }, seed: 2,
};
const DEVICES = ['cpu', 'cuda:0', 'cuda:1'] as const;

function relative(a: Float32Array, b: Float32Array): number {
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; n += b[i] ** 2; }
  return Math.sqrt(d) / Math.max(Math.sqrt(n), 1e-30);
}

if (process.argv[2] === 'default-device') {
  for (const device of ['cuda:0', 'cuda:1'] as const) cuda.resetStats(device);
  const t = Tensor.zeros([2], { device: 'cuda' });
  const layer = new MoELayer({ ...config, device: 'cuda' });
  const out = layer.forward(Tensor.randn([4, 8], { seed: 1, device: 'cuda' }));
  process.stdout.write(`${JSON.stringify({ tensor: t.device, layer: out.y.device, launches: { 'cuda:0': cuda.stats('cuda:0').launches, 'cuda:1': cuda.stats('cuda:1').launches } })}\n`);
  process.exit(0);
}

const runs = DEVICES.map((device) => {
  const layer = new MoELayer({ ...config, device });
  return { device, layer, optimizer: new AdamW(layer, { lr: 1e-2 }) };
});
for (const device of ['cuda:0', 'cuda:1'] as const) cuda.resetStats(device);
const steps: { y: Record<string, number>; parameters: Record<string, number> }[] = [];
for (let step = 0; step < STEPS; step++) {
  const x = Tensor.randn([16, 8], { seed: 10 + step });
  const dy = Tensor.randn([16, 8], { seed: 20 + step });
  // Forward on every device, then backward on every device, then the optimizer: the current
  // device changes between all of these calls.
  const outs = runs.map((r) => r.layer.forward(x.to(r.device)));
  runs.forEach((r) => r.layer.backward(dy.to(r.device)));
  runs.forEach((r) => { r.optimizer.step(); r.layer.zeroGrad(); r.layer.endStep(); });
  const cpuY = outs[0].y.toArray() as Float32Array;
  const cpuParameters = runs[0].layer.parameters();
  const y: Record<string, number> = {}, parameters: Record<string, number> = {};
  runs.slice(1).forEach((r, i) => {
    y[r.device] = relative(outs[i + 1].y.toArray() as Float32Array, cpuY);
    parameters[r.device] = Math.max(...Object.entries(r.layer.parameters()).map(([name, t]) => relative(t.toArray() as Float32Array, cpuParameters[name].toArray() as Float32Array)));
  });
  steps.push({ y, parameters });
}
process.stdout.write(`${JSON.stringify({ steps, stats: { 'cuda:0': cuda.stats('cuda:0'), 'cuda:1': cuda.stats('cuda:1') } })}\n`);
