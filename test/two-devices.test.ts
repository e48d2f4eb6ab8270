/**
 * Two layers on two emulated devices train independently and equal the cpu (DESIGN §2b, issue
 * #17): test/children/two-devices.ts with MOEKIT_EMULATE_CUDA=1 and MOEKIT_EMU_DEVICES=2, in a child
 * process (the device count is fixed when the emulated runtime starts). Before the layer made its
 * device current at every call, the second layer's stages ran on the first device and the
 * emulator faulted.
 */
import * as fs from 'fs';
import * as path from 'path';
import { runChild, tail } from './helpers/child';

interface Report {
  steps: { y: Record<string, number>; parameters: Record<string, number> }[];
  stats: Record<string, { launches: number; hostToDeviceBytes: number }>;
}

const EMULATED_BUILD = path.join(__dirname, '..', 'build', 'Release', 'emulated', 'moekit.node');
// The same tolerance as test/training-device.test.ts: f32 sums in another order over a few steps.
const TOL = 1e-5;

(fs.existsSync(EMULATED_BUILD) || process.env.CI ? test : test.skip)('a layer on cuda:0 and one on cuda:1, calls interleaved: each equals the cpu within 1e-5 over 3 AdamW steps, each device did its own work', () => {
  const run = runChild<Report>('two-devices', { env: { MOEKIT_EMULATE_CUDA: '1', MOEKIT_EMU_DEVICES: '2', MOEKIT_EMU_SM: '89' } });
  if (run.signal !== null || run.status !== 0 || !run.report) throw new Error(`child ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
  expect(run.report.steps).toHaveLength(3);
  for (const step of run.report.steps) {
    for (const device of ['cuda:0', 'cuda:1']) {
      expect([device, step.y[device] <= TOL, step.parameters[device] <= TOL]).toEqual([device, true, true]);
    }
  }
  // Each device launched the kernels of its own layer: the same work, so the same counts.
  expect(run.report.stats['cuda:0'].launches).toBeGreaterThan(0);
  expect(run.report.stats['cuda:1'].launches).toBe(run.report.stats['cuda:0'].launches);
  expect(run.report.stats['cuda:1'].hostToDeviceBytes).toBe(run.report.stats['cuda:0'].hostToDeviceBytes);
});

(fs.existsSync(EMULATED_BUILD) || process.env.CI ? test : test.skip)("MOEKIT_DEVICE=cuda:1: 'cuda' names cuda:1 for tensors and layers, whose kernels run there", () => {
  const run = runChild<{ tensor: string; layer: string; launches: Record<string, number> }>('two-devices', {
    args: ['default-device'], env: { MOEKIT_EMULATE_CUDA: '1', MOEKIT_EMU_DEVICES: '2', MOEKIT_EMU_SM: '89', MOEKIT_DEVICE: 'cuda:1' },
  });
  if (run.signal !== null || run.status !== 0 || !run.report) throw new Error(`child ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
  expect(run.report.tensor).toBe('cuda:1');
  expect(run.report.layer).toBe('cuda:1');
  expect(run.report.launches['cuda:0']).toBe(0);
  expect(run.report.launches['cuda:1']).toBeGreaterThan(0);
});
