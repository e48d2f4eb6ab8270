/**
 * DESIGN §4: "a worker or process that ends during a call ends cleanly". test/children/
 * worker-shutdown.ts trains layers in worker threads and ends them mid-call: worker.terminate()
 * from the main thread, or process.exit(0) while the workers run. The child must exit normally
 * (no signal: before the fix node-addon-api's unthrowable error reached std::terminate, SIGABRT).
 * The shutdowns race with the calls, so each case runs several times with different delays.
 */
import * as fs from 'fs';
import * as path from 'path';
import { runChild, tail } from './helpers/child';

interface ShutdownReport {
  mode: string;
  device: string;
  exitCodes: number[];
  afterWorkers: number;
  mainSteps: number[];
  liveBytes: number;
}

const EMULATED_BUILD = path.join(__dirname, '..', 'build', 'Release', 'emulated', 'moekit.node');
const devices: [string, Record<string, string>][] = [['cpu', {}]];
// The emulated device too, in a checkout that built it (CI always does), except in the sanitizer
// run (scripts/sanitize.sh), whose MOEKIT_ADDON_PATH names the CPU-only ASan build under test.
if ((fs.existsSync(EMULATED_BUILD) || process.env.CI) && !process.env.MOEKIT_ADDON_PATH) {
  devices.push(['cuda:0 (emulated)', { MOEKIT_EMULATE_CUDA: '1', MOEKIT_SHUTDOWN_DEVICE: 'cuda:0', MOEKIT_EMU_SM: '89' }]);
}

describe.each(devices)('worker shutdown on %s', (_name, deviceEnv) => {
  test.each([11, 12])('worker.terminate() during training steps (seed %i, 3 rounds of 3 workers): clean exit, memory freed, main thread still trains', (seed) => {
    const run = runChild<ShutdownReport>('worker-shutdown', {
      args: ['terminate'], env: { ...deviceEnv, MOEKIT_SHUTDOWN_SEED: String(seed), MOEKIT_SHUTDOWN_ROUNDS: '3' }, timeoutMs: 120_000,
    });
    if (run.signal !== null || run.status !== 0 || !run.report) throw new Error(`child ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
    const report = run.report;
    expect(report.exitCodes).toEqual(new Array(9).fill(1));  // worker.terminate() resolves with exit code 1
    expect(report.afterWorkers).toBe(0);  // every tensor of the terminated workers was freed
    expect(report.liveBytes).toBe(0);
    expect(report.mainSteps.every(Number.isFinite)).toBe(true);
    expect(report.mainSteps[0]).not.toBe(report.mainSteps[1]);  // the AdamW step changed the layer
  }, 130_000);

  test.each([21, 22, 23, 24])('process.exit(0) while 3 workers are inside calls (seed %i): exit code 0, no signal', (seed) => {
    const run = runChild<ShutdownReport>('worker-shutdown', { args: ['exit'], env: { ...deviceEnv, MOEKIT_SHUTDOWN_SEED: String(seed) }, timeoutMs: 60_000 });
    if (run.signal !== null || run.status !== 0) throw new Error(`child ended with ${run.signal ?? run.status}\n${tail(run.stderr)}`);
    expect(run.stderr).not.toMatch(/terminate called|Napi::Error|FATAL ERROR/);
  }, 70_000);
});
