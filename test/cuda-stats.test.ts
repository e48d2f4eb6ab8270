/**
 * cuda.stats() (DESIGN §2b, issue #17 item 6): the counters of native/cuda/device_counters.h, counted
 * where moekit calls the CUDA runtime. Run on the emulated cuda device (project cuda-emulated) and on
 * any real one the cpu project lists; where no cuda device exists, the API refuses with DeviceError.
 *
 * The layer step below keeps its tensors on the device (parameters, gradients, moments,
 * activations): what crosses PCIe is the routing decisions, which are host data in this version
 * (native/layer/stages.h), and the GEMMs' tile lists; issue #17 item 3 moves those to the device.
 * Its steady state makes no device allocation (stage buffers persist, per-call scratch comes from
 * the device's memory pool with its release threshold raised).
 */
import { AdamW, CudaStats, DeviceError, MoEConfig, MoELayer, Tensor, cuda, devices } from '../lib';
import { uniformTensor } from './helpers/random';

/**
 * One training step on x's device — forward, backward, AdamW step, zeroGrad, endStep — counted
 * from a reset of its stats up to the disposal of every output (so liveBytes is what the layer,
 * the optimizer and the caller's tensors hold between steps); and the devices of y, dx and
 * routing.indices.
 */
function trainingStep(layer: MoELayer, optimizer: AdamW, x: Tensor, dy: Tensor): { stats: CudaStats; outputs: string[] } {
  cuda.resetStats(x.device as `cuda:${number}`);
  const out = layer.forward(x);
  const { dx } = layer.backward(dy);
  optimizer.step();
  layer.zeroGrad();
  layer.endStep();
  const outputs = [out.y.device, dx.device, out.routing.indices.device];
  for (const t of [out.y, dx, out.routing.indices, out.routing.weights, out.routing.keep, ...Object.values(out.routing.assignments)]) t.dispose();
  return { stats: cuda.stats(x.device as `cuda:${number}`), outputs };
}

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
    const { liveBytes: live, reservedBytes: reserved } = cuda.stats(device);
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
      reservedBytes: reserved,
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

  const smallLayer = (): MoEConfig => ({
    hidden: 64, experts: [{ name: 'e', count: 8, ffnHidden: 96 }], sharedExperts: { count: 1, ffnHidden: 64 }, activation: 'swiglu',
    router: { topK: 2 }, losses: { balance: { coeff: 0.01, scope: 'global' } }, precision: { compute: 'bf16' }, seed: 5, device,
  });

  test('a training step of a small bf16 layer (shared expert, global balance): no parameter, gradient or activation bytes cross, the same every step, no allocation after the first', () => {
    const layer = new MoELayer(smallLayer());
    const optimizer = new AdamW(layer, { lr: 1e-3 });
    const x = uniformTensor([128, 64], 3).to(device);
    const dy = uniformTensor([128, 64], 4).to(device);
    const step = () => {
      const { stats, outputs } = trainingStep(layer, optimizer, x, dy);
      expect(outputs).toEqual([device, device, device]);
      return stats;
    };
    const first = step();
    step();  // AdamW's moments, made at the first step, change the pool's layout once
    const second = step();
    const third = step();
    const { liveBytes: _l2, peakBytes: _p2, reservedBytes: _r2, ...counts2 } = second;
    const { liveBytes: _l3, peakBytes: _p3, reservedBytes: _r3, ...counts3 } = third;
    expect(counts3).toEqual(counts2);  // the step's traffic does not drift
    // Parameters, gradients, moments, x, y, dy and dx stay on the device: the step moves at most
    // 16 KB (issue #17), less than x alone (32 KB) — only the routing decisions and tile lists,
    // O(T·k) and O(E) words.
    const parameterBytes = Object.values(layer.parameters()).reduce((sum, t) => sum + t.nbytes, 0);
    const moved = second.hostToDeviceBytes + second.deviceToHostBytes;
    expect(moved).toBeLessThanOrEqual(16 * 1024);
    expect(moved).toBeLessThan(x.nbytes);
    // The stages' buffers and the pool's blocks are made on the first step; later steps reuse them.
    expect(first.allocations).toBeGreaterThan(0);
    expect(second.allocations).toBe(0);
    expect(third.liveBytes).toBe(second.liveBytes);  // nothing held over from step to step
    expect(third.reservedBytes).toBe(second.reservedBytes);
    expect(second.peakBytes).toBeGreaterThan(second.liveBytes);  // the step's activations and scratch, returned by its end
    process.stdout.write(`training step, ${device} (T=128, H=64, 8 experts F=96 + 1 shared F=64, top-2, bf16, AdamW): ${JSON.stringify(second)}, parameters ${parameterBytes} bytes\n`);
    layer.dispose();
    optimizer.dispose();
  });

  test('device memory of a Mixtral-like bf16 layer scaled down (H=128, F=448, 8 experts, top-2, T=128, AdamW): between steps exactly the README formula, and the peak of a step', () => {
    const T = 128, H = 128, F = 448, E = 8;
    const before = cuda.stats(device).liveBytes;
    const layer = new MoELayer({
      hidden: H, experts: [{ name: 'e', count: E, ffnHidden: F }], activation: 'swiglu', router: { topK: 2 },
      losses: { balance: { coeff: 0.01 } }, precision: { compute: 'bf16' }, seed: 9, device,
    });
    const optimizer = new AdamW(layer, { lr: 1e-3 });
    const x = uniformTensor([T, H], 7).to(device);
    const dy = uniformTensor([T, H], 8).to(device);
    const step = () => trainingStep(layer, optimizer, x, dy).stats;
    step();
    step();
    const s = step();
    const bytes = (ts: Record<string, { nbytes: number }>) => Object.values(ts).reduce((sum, t) => sum + t.nbytes, 0);
    const parameters = bytes(layer.parameters());
    const state = 2 * E * 4;  // router.bias, router.load
    const gradients = bytes(layer.grads());
    const moments = 2 * gradients;  // AdamW m, v
    const up8 = (v: number) => Math.ceil(v / 8) * 8;
    const operands = 3 * E * up8(F) * up8(H) * 2 + E * (F + H) * 4;  // bf16 w1, w3, w2 padded to 8; their row maps
    const resident = parameters + state + gradients + moments + operands;
    expect(s.liveBytes - before - x.nbytes - dy.nbytes).toBe(resident);
    expect(s.allocations).toBe(0);
    expect(s.peakBytes).toBeGreaterThan(s.liveBytes);
    process.stdout.write(`device memory, ${device}, Mixtral-like bf16 scaled down (T=128, H=128, F=448, E=8, top-2, AdamW): resident ${resident} B (parameters ${parameters}, gradients ${gradients}, moments ${moments}, bf16 operands ${operands}, state ${state}); peak of a step ${s.peakBytes - before - x.nbytes - dy.nbytes} B above x and dy; pool reserved ${s.reservedBytes} B\n`);
    layer.dispose();
    optimizer.dispose();
  });

  test('the bf16 operands of the expert weights are rebuilt only when a weight changes (write, AdamW step)', () => {
    const layer = new MoELayer(smallLayer());
    const x = uniformTensor([32, 64], 6).to(device);
    const launchesOf = () => {
      cuda.resetStats(device);
      const y = layer.forward(x, { training: false }).y;
      const launches = cuda.stats(device).launches;
      const values = y.toArray();
      y.dispose();
      return { launches, values };
    };
    const first = launchesOf();
    const again = launchesOf();
    expect(again.values).toEqual(first.values);
    expect(again.launches).toBeLessThan(first.launches);  // nothing to convert: the weights did not change
    const w2 = layer.parameters()['experts.e.w2'];
    w2.write(new Float32Array(w2.numel));
    const written = launchesOf();
    // w2's operand is rebuilt, w1's and w3's (and the shared expert's) are kept
    expect(written.launches).toBeGreaterThan(again.launches);
    expect(written.launches).toBeLessThan(first.launches);
    // … and the forward reads the new w2: the same layer on the cpu from this state agrees
    const onCpu = new MoELayer({ ...smallLayer(), device: 'cpu' });
    onCpu.loadStateDict(layer.stateDict());
    const want = onCpu.forward(x.to('cpu'), { training: false }).y.toArray();
    let diff = 0;
    let norm = 0;
    want.forEach((v, i) => { diff += (written.values[i] - v) ** 2; norm += v * v; });
    expect(Math.sqrt(diff / norm)).toBeLessThan(1e-5);  // bf16 operands, fp32 sums in another order
    expect(written.values).not.toEqual(first.values);
    layer.dispose();
    onCpu.dispose();
  });
});
