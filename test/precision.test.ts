/**
 * Layer precision modes (issue #6 part D, README "The MoE layer"): the relative error of a layer
 * forward and backward in bf16 and fp8 against f32 on random data (T = 64, H = 256, E = 8,
 * F = 384, top-2 swiglu with one shared expert), reported in the test names' console output and
 * bounded; the routing decisions must not change (the router reads the same f32 x); the layer
 * reports the path that ran (the GEMMs too: tensor cores for bf16 and fp8 on cuda); a cuda device
 * agrees with the cpu in every mode.
 */
import { devices, MoEConfig, MoELayer, MoEOutput } from '../lib';
import type { ExpertPrecision } from '../lib/native';
import { describeOnDevices, DeviceName } from './helpers/devices';
import { relativeError } from './helpers/golden';
import { uniformTensor } from './helpers/random';
import { PRECISION_MODES, PrecisionMode, TOLERANCE } from './helpers/tolerances';

const T = 64, H = 256, E = 8, F = 384;
const config: MoEConfig = {
  hidden: H,
  experts: [{ name: 'routed', count: E, ffnHidden: F }],
  sharedExperts: { count: 1, ffnHidden: F },
  activation: 'swiglu',
  router: { type: 'topk', topK: 2 },
  seed: 7,
};
const x = uniformTensor([T, H], 11);
const dy = uniformTensor([T, H], 12);

/**
 * Shapes the tensor-core kernels take only with zero columns appended (native/cuda/experts.h):
 * H = 36 and F ∈ {20, 44, 12} are multiples of neither 8 (bf16) nor 16 (fp8); two routed groups
 * of different F (each with its own padded row layout) and a shared expert. Top-3 of 4 experts
 * over 96 tokens gives the experts ~72 rows each: two 64-row tiles, so each next expert starts
 * past padding rows.
 */
const paddedT = 96, paddedH = 36;
const paddedConfig: MoEConfig = {
  hidden: paddedH,
  experts: [{ name: 'narrow', count: 2, ffnHidden: 20 }, { name: 'wide', count: 2, ffnHidden: 44 }],
  sharedExperts: { count: 1, ffnHidden: 12 },
  activation: 'swiglu',
  router: { type: 'topk', topK: 3 },
  seed: 5,
};
const paddedInputs = { x: uniformTensor([paddedT, paddedH], 13), dy: uniformTensor([paddedT, paddedH], 14) };

interface Run { out: MoEOutput; dx: Float32Array; grads: Record<string, Float32Array> }

// One training step of the layer in `mode` on `device`, from the cpu f32 layer's parameters. The
// weights are scaled to 1/√fan-in by the layer's init, so h and y are O(1).
function run(mode: PrecisionMode, device: DeviceName, cfg: MoEConfig = config, inputs = { x, dy }): Run {
  const reference = new MoELayer(cfg);
  reference.forward(inputs.x, { training: false });
  const layer = new MoELayer({ ...cfg, device, precision: PRECISION_MODES[mode] });
  const state = reference.stateDict();
  layer.loadStateDict(Object.fromEntries(Object.entries(state).map(([k, t]) => [k, t.to(device)])));
  layer.zeroGrad();
  const out = layer.forward(inputs.x.to(device));
  const { dx } = layer.backward(inputs.dy.to(device));
  const grads = Object.fromEntries(Object.entries(layer.grads()).map(([k, t]) => [k, t.toArray() as Float32Array]));
  return { out, dx: dx.toArray() as Float32Array, grads };
}

// The runs are deterministic: each (mode, device) runs once and serves every test that reads it
// (the emulated device's tensor-core kernels are slow to emulate).
const runs = new Map<string, Run>();
function runOnce(mode: PrecisionMode, device: DeviceName): Run {
  const key = `${mode} ${device}`;
  if (!runs.has(key)) runs.set(key, run(mode, device));
  return runs.get(key) as Run;
}

function errors(got: Run, want: Run): Record<string, number> {
  const result: Record<string, number> = {
    y: relativeError(got.out.y.toArray(), want.out.y.toArray()),
    dx: relativeError(got.dx, want.dx),
  };
  for (const k of Object.keys(want.grads)) result[`grad ${k}`] = relativeError(got.grads[k], want.grads[k]);
  return result;
}

function computeCapability(device: DeviceName): number {
  const index = Number(device.slice('cuda:'.length));
  const info = devices().find((d) => d.kind === 'cuda' && d.index === index);
  return info?.kind === 'cuda' ? info.computeCapability ?? 0 : 0;
}

/**
 * The GEMMs a forward in `mode` runs on `device` (lib/native.ts ExpertPrecision.gemm): the cpu's
 * own; on cuda, f32 SIMT kernels in f32 and tensor cores in the low modes, except fp8 below compute
 * capability 8.9 (no fp8 mma: the f32 SIMT kernels fed e4m3 block values) and fp8 at 9.0, whose
 * forward e4m3 GEMMs run on warpgroup MMA (the emulator and the default nvcc build have the sm_90a
 * code).
 */
function expectedGemm(device: DeviceName, mode: PrecisionMode): ExpertPrecision['gemm'] {
  if (device === 'cpu') return 'cpu';
  if (mode === 'f32') return 'f32-simt';
  const capability = computeCapability(device);
  if (mode === 'fp8' && capability < 89) return 'f32-simt';
  return mode === 'fp8' && capability === 90 ? 'tensor-core-wgmma' : 'tensor-core';
}

// A cuda run against the cpu's in one mode.
function expectCrossDevice(e: Record<string, number>, mode: PrecisionMode): void {
  // dWeight is dy·E_e(x) with the forward's own expert output on both devices (native/cpu/experts.h,
  // Precision), so every gradient, the router weight's included, is held to the cross-device bound.
  for (const v of Object.values(e)) expect(v).toBeLessThan(TOLERANCE.crossDevice[mode]);
}

const decisions = (out: MoEOutput) => [out.routing.indices, out.routing.keep].map((t) => Array.from(t.toArray()));

describeOnDevices((device) => {
  const f32 = runOnce('f32', device);

  test('the f32 forward reports the f32 path', () => {
    expect(f32.out.precision).toEqual({ compute: 'f32', experts: 'same', device: device === 'cpu' ? 'cpu' : 'cuda', gemm: expectedGemm(device, 'f32') });
  });

  describe.each(['bf16', 'fp8'] as const)('%s', (mode) => {
    const low = runOnce(mode, device);

    test('reports the path that ran', () => {
      expect(low.out.precision).toEqual({
        compute: 'bf16',
        experts: mode === 'fp8' ? 'fp8' : 'same',
        device: device === 'cpu' ? 'cpu' : 'cuda',
        gemm: expectedGemm(device, mode),
      });
    });

    test('routes exactly as f32 (the router reads the same f32 x)', () => {
      expect(decisions(low.out)).toEqual(decisions(f32.out));
      expect(Array.from(low.out.routing.weights.toArray())).toEqual(Array.from(f32.out.routing.weights.toArray()));
    });

    test(`forward and backward relative error vs f32 within ${TOLERANCE[mode]} (reported)`, () => {
      const e = errors(low, f32);
      // The numbers this issue asks for: printed so a run shows them.
      console.log(`${device} ${mode} vs f32 relative error: ${Object.entries(e).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
      for (const v of Object.values(e)) expect(v).toBeLessThan(TOLERANCE[mode]);
      // A low mode that silently ran f32 would be exact: the error is visibly there.
      expect(e.y).toBeGreaterThan(TOLERANCE.f32 / 100);
    });
  });

  if (device !== 'cpu') {
    if (process.env.MOEKIT_TEST_PROJECT === 'cuda-emulated-sm90') {
      test('this project runs on an emulated compute capability 9.0 device (fp8 forward on wgmma)', () => {
        expect(computeCapability(device)).toBe(90);
        expect(runOnce('fp8', device).out.precision.gemm).toBe('tensor-core-wgmma');
      });
    }

    describe.each(['f32', 'bf16', 'fp8'] as const)('%s agrees with the cpu', (mode) => {
      test(`within ${TOLERANCE.crossDevice[mode]}`, () => {
        const e = errors(runOnce(mode, device), runOnce(mode, 'cpu'));
        console.log(`${device} vs cpu in ${mode}: ${Object.entries(e).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
        expectCrossDevice(e, mode);
      });
    });

    describe.each(['bf16', 'fp8'] as const)('%s on shapes padded for the tensor cores', (mode) => {
      test.each(['swiglu', 'gelu', 'relu'] as const)(`%s agrees with the cpu within ${TOLERANCE.crossDevice[mode]}`, (activation) => {
        const cfg: MoEConfig = { ...paddedConfig, activation };
        const cuda = run(mode, device, cfg, paddedInputs);
        expect(cuda.out.precision.gemm).toBe(expectedGemm(device, mode));
        expect(Math.max(...Array.from(cuda.out.stats.counts))).toBeGreaterThan(64);
        const e = errors(cuda, run(mode, 'cpu', cfg, paddedInputs));
        console.log(`${device} vs cpu in ${mode}, ${activation}, H ${paddedH}: ${Object.entries(e).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
        expectCrossDevice(e, mode);
      });
    });
  }
});
