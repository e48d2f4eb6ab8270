/**
 * cuda.stats() (DESIGN §2b, issue #17 item 6): the counters of native/cuda/device_counters.h, counted
 * where moekit calls the CUDA runtime. Run on the emulated cuda device (project cuda-emulated) and on
 * any real one the cpu project lists; where no cuda device exists, the API refuses with DeviceError.
 *
 * The layer step below is today's host-staged design (tensors in host memory, every stage uploads
 * what it reads): its traffic is the baseline issue #17 replaces (≤ 16 KB host↔device per step);
 * its steady state already makes no device allocation (stage buffers persist, per-call scratch
 * comes from the device's memory pool with its release threshold raised).
 */
import { AdamW, DeviceError, MoEConfig, MoELayer, cuda, devices } from '../lib';
import { uniformTensor } from './helpers/random';

const cudaDevices = devices().flatMap((d) => (d.kind === 'cuda' ? [`cuda:${d.index}` as const] : []));

if (cudaDevices.length === 0) {
  test('without a cuda device, cuda.stats / resetStats / synchronize throw DeviceError', () => {
    for (const call of [() => cuda.stats(), () => cuda.resetStats('cuda:0'), () => cuda.synchronize('cuda')]) {
      expect(call).toThrow(DeviceError);
    }
  });
} else describe.each(cudaDevices)('cuda.stats on %s', (device) => {
  test('a device that is not listed, or cpu, throws DeviceError naming it', () => {
    expect(() => cuda.stats('cuda:63')).toThrow(/cuda:63, which is not available/);
    expect(() => cuda.stats('cpu' as never)).toThrow(DeviceError);
    expect(() => cuda.stats('gpu' as never)).toThrow(DeviceError);
  });

  test('AdamW on a cuda parameter of N floats runs on the device memory: nothing copied, no wait, 1 launch, 0 allocations', () => {
    const N = 1000;
    const param = uniformTensor([N], 1).to(device);
    const grad = uniformTensor([N], 2).to(device);
    const optimizer = new AdamW({ parameters: () => ({ p: param }), grads: () => ({ p: grad }) }, { lr: 0.01 });
    optimizer.step();  // the moments (on the device) are made on the first step
    cuda.resetStats(device);
    const live = cuda.stats(device).liveBytes;
    optimizer.step();
    const s = cuda.stats(device);
    expect(s).toEqual({
      hostToDeviceBytes: 0,
      deviceToHostBytes: 0,
      synchronizations: 0,
      allocations: 0,
      launches: 1,
      liveBytes: live,
      peakBytes: live,
    });
    optimizer.dispose();
  });

  test('resetStats zeroes the counts and keeps liveBytes; synchronize counts one wait', () => {
    cuda.resetStats(device);
    cuda.synchronize(device);
    const s = cuda.stats(device);
    expect(s.synchronizations).toBe(1);
    expect([s.hostToDeviceBytes, s.deviceToHostBytes, s.allocations, s.launches]).toEqual([0, 0, 0, 0]);
    expect(s.peakBytes).toBe(s.liveBytes);
  });

  test('a training step of a small bf16 layer (shared expert, global balance), host-staged: what it moves, the same every step, and no allocation after the first', () => {
    const config: MoEConfig = {
      hidden: 64, experts: [{ name: 'e', count: 8, ffnHidden: 96 }], sharedExperts: { count: 1, ffnHidden: 64 }, activation: 'swiglu',
      router: { topK: 2 }, losses: { balance: { coeff: 0.01, scope: 'global' } }, precision: { compute: 'bf16' }, seed: 5, device,
    };
    const layer = new MoELayer(config);
    const optimizer = new AdamW(layer, { lr: 1e-3 });
    const x = uniformTensor([128, 64], 3).to(device);
    const dy = uniformTensor([128, 64], 4).to(device);
    const step = () => {
      cuda.resetStats(device);
      const out = layer.forward(x);
      const { dx } = layer.backward(dy);
      optimizer.step();
      layer.zeroGrad();
      layer.endStep();
      const stats = cuda.stats(device);
      for (const t of [out.y, dx, out.routing.indices, out.routing.weights, out.routing.keep, ...Object.values(out.routing.assignments)]) t.dispose();
      return stats;
    };
    const first = step();
    const second = step();
    const third = step();
    const { liveBytes: _l2, peakBytes: _p2, ...counts2 } = second;
    const { liveBytes: _l3, peakBytes: _p3, ...counts3 } = third;
    expect(counts3).toEqual(counts2);  // the step's traffic does not drift
    // Host-staged: every forward uploads the expert weights, and AdamW stages each parameter up
    // (param, grad, m, v) and down (param, m, v).
    const parameterBytes = Object.values(layer.parameters()).reduce((sum, t) => sum + t.nbytes, 0);
    expect(second.hostToDeviceBytes).toBeGreaterThan(5 * parameterBytes);
    expect(second.deviceToHostBytes).toBeGreaterThan(3 * parameterBytes);
    // The stages' buffers and the pool's blocks are made on the first step; later steps reuse them.
    expect(first.allocations).toBeGreaterThan(0);
    expect(second.allocations).toBe(0);
    expect(second.peakBytes).toBe(second.liveBytes);
    expect(second.synchronizations).toBeGreaterThan(1);
    process.stdout.write(`host-staged training step, ${device} (T=128, H=64, 8 experts F=96 + 1 shared F=64, top-2, bf16): ${JSON.stringify(second)}, parameters ${parameterBytes} bytes\n`);
    layer.dispose();
    optimizer.dispose();
  });
});
