/**
 * The emulated-CUDA build (DESIGN §5): MOEKIT_EMULATE_CUDA=1 makes require('moekit') load
 * build/Release/emulated/moekit.node, whose CUDA code runs on the SIMT emulator; it lists one
 * {kind:'cuda', emulated:true} device. Without the variable the normal build loads.
 */
import { Device } from '../lib';
import { runChild, tail } from './helpers/child';

interface Report {
  devices: Device[];
  build: { cuda: boolean; emulated: boolean; cudaArchitectures: string[]; commBackends: string[] };
  y: number[];
}

test('MOEKIT_EMULATE_CUDA=1 loads the emulated build, which lists an emulated cuda device', () => {
  const emulated = runChild<Report>('emulated-devices', { env: { MOEKIT_EMULATE_CUDA: '1' } });
  expect({ status: emulated.status, stderr: emulated.status === 0 ? '' : tail(emulated.stderr) }).toEqual({ status: 0, stderr: '' });
  const report = emulated.report as Report;
  expect(report.build).toEqual({ cuda: true, emulated: true, cudaArchitectures: ['emulated'], commBackends: expect.arrayContaining(['local', 'nccl']) });
  expect(report.devices[0]).toEqual({ kind: 'cpu' });
  expect(report.devices.slice(1)).toEqual([expect.objectContaining({ kind: 'cuda', index: 0, emulated: true })]);

  const normal = runChild<Report>('emulated-devices', { env: { MOEKIT_EMULATE_CUDA: '0' } });
  expect(normal.status).toBe(0);
  expect((normal.report as Report).build.emulated).toBe(false);
  expect((normal.report as Report).devices.every((d) => d.kind === 'cpu' || !('emulated' in d))).toBe(true);
  // the same CPU layer in both binaries
  expect(report.y).toEqual((normal.report as Report).y);
});

test('MOEKIT_EMU_SM sets the emulated compute capability (lib/native.ts passes it on); a value the emulator lacks is an ArgumentError', () => {
  const sm90 = runChild<Report>('emulated-devices', { env: { MOEKIT_EMULATE_CUDA: '1', MOEKIT_EMU_SM: '90' } });
  expect({ status: sm90.status, stderr: sm90.status === 0 ? '' : tail(sm90.stderr) }).toEqual({ status: 0, stderr: '' });
  expect((sm90.report as Report).devices[1]).toEqual(expect.objectContaining({ kind: 'cuda', computeCapability: 90 }));

  const sm75 = runChild<Report>('emulated-devices', { env: { MOEKIT_EMULATE_CUDA: '1', MOEKIT_EMU_SM: '75' } });
  expect(sm75.status).not.toBe(0);
  expect(sm75.stderr).toMatch(/ArgumentError: setEmulatedComputeCapability: cc: expected 80, 86, 89, 90 or 0 \(MOEKIT_EMU_SM\), got 75/);
});
