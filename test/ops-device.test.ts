/**
 * ops, losses, AdamW and the collectives on every device (DESIGN §2b: they take cuda tensors and
 * return tensors on the same device). Run per device (test/helpers/devices.ts). On a cuda device:
 *   - quantizeFp8, groupedGemmFp8 and AdamW run their CUDA kernels on the device memory
 *     (cuda.stats: launches, and no operand bytes moved, no wait);
 *   - the other ops, the losses and the collectives are staged through the host: their results
 *     must equal the cpu's bit for bit and be on the device.
 * Operands on two devices are a DeviceError naming the argument, from the facade and from the
 * native binding alike.
 */
import { AdamW, DeviceError, Tensor, cuda, dist, losses, ops, parseSafetensors, serializeSafetensors } from '../lib';
import { native } from '../lib/native';
import { DeviceName, describeOnDevices } from './helpers/devices';
import { uniformTensor } from './helpers/random';

/** The storage bytes of a tensor on any device. */
function bits(t: Tensor): number[] {
  const host = t.to('cpu');
  const out = Array.from(new Uint8Array(host.view().buffer.slice(0)));
  host.dispose();
  return out;
}

/** `got` is on `device` and holds the bits of the cpu tensor `want`. */
function expectSame(got: Tensor, want: Tensor, device: DeviceName): void {
  expect(got.device).toBe(device);
  expect([got.dtype, got.shape]).toEqual([want.dtype, want.shape]);
  expect(bits(got)).toEqual(bits(want));
}

function thrown(call: () => unknown): Error {
  try {
    call();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to throw');
}

describeOnDevices((device) => {
  const on = (t: Tensor) => t.to(device);

  describe('ops.quantizeFp8', () => {
    test.each([
      ['activations [M,K], 1 × 128 blocks, e4m3', [37, 300], [1, 128], 'e4m3'],
      ['weights [G,N,K], 128 × 128 blocks, e5m2', [2, 130, 200], [128, 128], 'e5m2'],
    ] as const)('%s: on the device, bit-equal to the cpu', (_name, shape, block, format) => {
      const values = uniformTensor([...shape], 3, 4).toArray() as Float32Array;
      values[5] = 1e30;  // a block whose amax saturates the others to ±0
      const x = Tensor.from(values, [...shape]);
      const want = ops.quantizeFp8(x, { block: [...block], format });
      const onDevice = on(x);
      if (device !== 'cpu') cuda.resetStats(device);
      const got = ops.quantizeFp8(onDevice, { block: [...block], format });
      if (device !== 'cpu') {
        // The kernel reads x and writes q and scales where they are: nothing crosses, nothing waits.
        const s = cuda.stats(device);
        expect(s.launches).toBeGreaterThan(0);
        expect([s.hostToDeviceBytes, s.deviceToHostBytes, s.synchronizations]).toEqual([0, 0, 0]);
      }
      expectSame(got.q, want.q, device);
      expectSame(got.scales, want.scales, device);
    });
  });

  describe('ops.groupedGemmFp8', () => {
    // Group sizes 0, 1, 63, 65 (the row tile is 64), K = 200 (a partial last block, padded to 208 for
    // the kernel), N = 130 (two column blocks).
    const sizes = [0, 1, 63, 65];
    const [M, N, K] = [129, 130, 200];

    // Values in multiples of 0.5 within ±3.5 and a 3.5 in every block: every scale is 3.5/448 = 2^-7,
    // every code is x·128 (a multiple of 64, exact in e4m3), so every block sum, scale product and
    // running sum is exact in fp32 and the kernel must equal the cpu bit for bit.
    const halves = (shape: number[], seed: number, blockRows: number) => {
      const values = uniformTensor(shape, seed, 3.5).toArray().map((v) => Math.round(v * 2) / 2) as Float32Array;
      const [rows, cols] = shape.slice(-2);
      for (let m = 0; m < values.length / (rows * cols); m++)
        for (let r = 0; r < rows; r += blockRows)
          for (let c = 0; c < cols; c += 128) values[(m * rows + r) * cols + c] = 3.5;
      return Tensor.from(values, shape);
    };

    test.each([
      ['K = 200 (padded to 208 on the device)', 200],
      ['K = 256 (no padding of K)', 256],
    ])('exact operands (scales 2^-7), %s: on the device, bit-equal to the cpu, only the row tables uploaded', (_name, k) => {
      const a = ops.quantizeFp8(halves([M, k], 1, 1), { block: [1, 128] });
      const b = ops.quantizeFp8(halves([4, N, k], 2, 128), { block: [128, 128] });
      expect(new Set([...a.scales.toArray(), ...b.scales.toArray()])).toEqual(new Set([2 ** -7]));
      const want = ops.groupedGemmFp8(a, b, sizes);
      const aOn = { q: on(a.q), scales: on(a.scales) }, bOn = { q: on(b.q), scales: on(b.scales) };
      if (device !== 'cpu') cuda.resetStats(device);
      const got = ops.groupedGemmFp8(aOn, bOn, sizes);
      if (device !== 'cpu') {
        const s = cuda.stats(device);
        expect(s.launches).toBeGreaterThan(0);
        expect([s.deviceToHostBytes, s.synchronizations]).toEqual([0, 0]);
        expect(s.hostToDeviceBytes).toBeGreaterThan(0);  // the group and tile tables
        expect(s.hostToDeviceBytes).toBeLessThan(1024);  // …and no operand (a.q alone is 129·K bytes)
      }
      expectSame(got, want, device);
    });

    test('random values: on the device, within 1e-6 relative of the cpu (fp32 block sums in the tensor cores\' order)', () => {
      const a = ops.quantizeFp8(uniformTensor([M, K], 3), { block: [1, 128] });
      const b = ops.quantizeFp8(uniformTensor([4, N, K], 4), { block: [128, 128] });
      const want = ops.groupedGemmFp8(a, b, sizes).toArray();
      const got = ops.groupedGemmFp8({ q: on(a.q), scales: on(a.scales) }, { q: on(b.q), scales: on(b.scales) }, sizes).toArray();
      let d = 0, n = 0;
      for (let i = 0; i < want.length; i++) { d += (got[i] - want[i]) ** 2; n += want[i] ** 2; }
      expect(Math.sqrt(d / n)).toBeLessThan(1e-6);
    });

    if (device !== 'cpu') {
      test('e5m2 operands, and operands on different devices, are typed errors', () => {
        const a = ops.quantizeFp8(uniformTensor([4, 16], 5), { block: [1, 128], format: 'e5m2' });
        const b = ops.quantizeFp8(uniformTensor([1, 8, 16], 6), { block: [128, 128], format: 'e5m2' });
        expect(() => ops.groupedGemmFp8({ q: on(a.q), scales: on(a.scales) }, { q: on(b.q), scales: on(b.scales) }, [4])).toThrow(/^a\.q: the CUDA kernel multiplies e4m3 codes, got e5m2/);
        expect(() => ops.groupedGemmFp8({ q: on(a.q), scales: a.scales }, { q: on(b.q), scales: on(b.scales) }, [4])).toThrow(/^a\.scales is on cpu, a\.q on cuda/);
      });
    }
  });

  describe('the host-staged ops: results on the device, equal to the cpu\'s', () => {
    const experts = Tensor.from(Int32Array.from([0, 2, -1, 1, 2, 2, 1, -1, 0, 0, 2, 1]), [6, 2]);
    const x = uniformTensor([6, 5], 11);

    test('permute and its backward', () => {
      const want = ops.permute(x, experts, 3);
      const got = ops.permute(on(x), on(experts), 3);
      expectSame(got.output, want.output, device);
      expectSame(got.rowToken, want.rowToken, device);
      expectSame(got.counts, want.counts, device);
      const dOutput = uniformTensor([...want.output.shape], 12);
      expectSame(got.backward(on(dOutput)), want.backward(dOutput), device);
    });

    test.each([['weighted', true], ['unweighted', false]])('unpermute (%s) and its backward', (_name, weighted) => {
      const { output: rows, rowToken } = ops.permute(x, experts, 3);
      const weights = weighted ? uniformTensor([rows.shape[0]], 13) : null;
      const want = ops.unpermute(rows, rowToken, weights, 6);
      const got = ops.unpermute(on(rows), on(rowToken), weights && on(weights), 6);
      expectSame(got.output, want.output, device);
      const dOutput = uniformTensor([6, 5], 14);
      const g = got.backward(on(dOutput)), w = want.backward(dOutput);
      expectSame(g.dRows, w.dRows, device);
      if (weighted) expectSame(g.dWeights as Tensor, w.dWeights as Tensor, device);
      else expect(g.dWeights).toBeNull();
    });

    test.each(['f32', 'bf16'] as const)('groupedGemm (%s) and its backward', (dtype) => {
      const a = uniformTensor([7, 8], 15).to(dtype), w = uniformTensor([3, 4, 8], 16).to(dtype);
      const want = ops.groupedGemm(a, w, [2, 0, 5]);
      const got = ops.groupedGemm(on(a), on(w), [2, 0, 5]);
      expectSame(got.output, want.output, device);
      const dOut = uniformTensor([7, 4], 17);
      const g = got.backward(on(dOut)), r = want.backward(dOut);
      expectSame(g.da, r.da, device);
      expectSame(g.dw, r.dw, device);
    });

    test('route (bias, load, capacity) and its backward', () => {
      const weight = uniformTensor([4, 5], 18);
      const bias = uniformTensor([4], 19), load = Tensor.from([0.4, 0.3, 0.2, 0.1], [4]);
      const router = { topK: 2, bias: true };
      const opts = { bias, load, capacity: { factor: 1 } };
      const want = ops.route(x, weight, router, opts);
      const got = ops.route(on(x), on(weight), router, { ...opts, bias: on(bias), load: on(load) });
      for (const key of ['indices', 'weights', 'keep', 'counts', 'accepted'] as const) expectSame(got[key], want[key], device);
      const dWeights = uniformTensor([6, 2], 20);
      const g = got.backward(on(dWeights)), r = want.backward(dWeights);
      expectSame(g.dx, r.dx, device);
      expectSame(g.dWeight, r.dWeight, device);
    });

    test('losses: loadBalance, zLoss, routerOrthogonality', () => {
      const probs = uniformTensor([6, 4], 21), counts = Tensor.from(Int32Array.from([3, 4, 0, 5]), [4]);
      const logits = Tensor.from(uniformTensor([6, 4], 22).toArray().map((v, i) => (i === 3 ? -Infinity : v)), [6, 4]);
      const weight = uniformTensor([4, 5], 23);
      const pairs = [
        [losses.loadBalance(on(probs), on(counts), { topK: 2, coeff: 0.01 }), losses.loadBalance(probs, counts, { topK: 2, coeff: 0.01 }), 'dProbs'],
        [losses.zLoss(on(logits), { coeff: 0.001 }), losses.zLoss(logits, { coeff: 0.001 }), 'dLogits'],
        [losses.routerOrthogonality(on(weight), { coeff: 0.1, mode: 'perGroup', groupSizes: [1, 3] }),
          losses.routerOrthogonality(weight, { coeff: 0.1, mode: 'perGroup', groupSizes: [1, 3] }), 'dWeight'],
      ] as const;
      for (const [got, want, grad] of pairs) {
        expect(got.loss).toBe(want.loss);
        expectSame((got as unknown as Record<string, Tensor>)[grad], (want as unknown as Record<string, Tensor>)[grad], device);
      }
    });
  });

  test('AdamW: three steps on the device equal the cpu\'s bit for bit; the moments live with the parameter', () => {
    const run = (d: DeviceName) => {
      const param = uniformTensor([3, 70], 24).to(d), grad = uniformTensor([3, 70], 25).to(d);
      const optimizer = new AdamW({ parameters: () => ({ p: param }), grads: () => ({ p: grad }) }, { lr: 0.01, weightDecay: 0.1 });
      for (let i = 0; i < 3; i++) optimizer.step();
      const moments = optimizer.moments('p') as { m: Tensor; v: Tensor };
      return { param, m: moments.m, v: moments.v };
    };
    const want = run('cpu'), got = run(device);
    for (const key of ['param', 'm', 'v'] as const) expectSame(got[key], want[key], device);
  });

  test('AdamW state saved from the device and loaded into an optimizer on the device continues bit for bit', () => {
    const make = () => {
      const param = uniformTensor([2, 9], 26).to(device), grad = uniformTensor([2, 9], 27).to(device);
      return { param, optimizer: new AdamW({ parameters: () => ({ p: param }), grads: () => ({ p: grad }) }, { lr: 0.05 }) };
    };
    const first = make(), second = make();
    first.optimizer.step();
    second.optimizer.step();
    const file = serializeSafetensors(first.optimizer.stateDict());
    // A state dict on the device serialises to the bytes of its cpu copy.
    const onCpu = Object.fromEntries(Object.entries(first.optimizer.stateDict()).map(([k, t]) => [k, t.to('cpu')]));
    expect(Array.from(file)).toEqual(Array.from(serializeSafetensors(onCpu)));
    const resumed = make();
    resumed.optimizer.loadStateDict(parseSafetensors(file).tensors);
    expect(resumed.optimizer.moments('p')?.m.device).toBe(device);
    resumed.param.handle.write(second.param.toArray());  // the parameter as saved (after one step)
    resumed.optimizer.step();
    second.optimizer.step();
    expectSame(resumed.param, second.param.to('cpu'), device);
  });

  describe('collectives (local communicator)', () => {
    const comm = dist.init({ backend: 'local' });
    afterAll(() => comm.close());

    test('allReduce, allGather, reduceScatter, broadcast and allToAllV return on the device what they return on the cpu', () => {
      const t = uniformTensor([4, 3], 28), onDevice = on(t);
      expectSame(comm.allReduce(onDevice, 'avg'), comm.allReduce(t, 'avg'), device);
      expectSame(comm.allGather(onDevice), comm.allGather(t), device);
      expectSame(comm.reduceScatter(onDevice, 'max'), comm.reduceScatter(t, 'max'), device);
      expectSame(comm.broadcast(onDevice, 0), comm.broadcast(t, 0), device);
      const got = comm.allToAllV(onDevice, [4]), want = comm.allToAllV(t, [4]);
      expectSame(got.tensor, want.tensor, device);
      expect(got.recvCounts).toEqual(want.recvCounts);
      expect(bits(onDevice)).toEqual(bits(t));  // the input is left as it was
    });
  });

  if (device !== 'cpu') {
    describe('operands on two devices: DeviceError naming the argument', () => {
      const x = uniformTensor([4, 8], 1);
      const cases: [string, () => unknown, RegExp][] = [
        ['ops.groupedGemm', () => ops.groupedGemm(on(x), uniformTensor([2, 3, 8], 2), [2, 2]), /^w is on cpu, a on cuda:\d+: every operand must be on one device/],
        ['ops.permute', () => ops.permute(on(x), Tensor.from(Int32Array.from([0, 1, 1, 0]), [4, 1]), 2), /^experts is on cpu, x on cuda/],
        ['ops.unpermute', () => ops.unpermute(on(x), on(Tensor.from(Int32Array.from([0, 1, 2, 3]), [4])), uniformTensor([4], 3), 4), /^weights is on cpu, rows on cuda/],
        ['ops.route', () => ops.route(on(x), uniformTensor([2, 8], 4), { topK: 1 }), /^weight is on cpu, x on cuda/],
        ['losses.loadBalance', () => losses.loadBalance(on(uniformTensor([4, 2], 5)), Tensor.from(Int32Array.from([2, 2]), [2]), { topK: 1, coeff: 1 }), /^counts is on cpu, probs on cuda/],
        ['native permute', () => native.permute(on(x).handle, Tensor.from(Int32Array.from([0, 1, 1, 0]), [4, 1]).handle, 2), /^experts is on cpu, x on cuda/],
        ['native groupedGemmBackward', () => native.groupedGemmBackward(uniformTensor([4, 3], 6).handle, on(x).handle, on(uniformTensor([2, 3, 8], 7)).handle, [2, 2]), /^a is on cuda:\d+, dOut on cpu/],
        ['native adamwStep', () => native.adamwStep(on(x).handle, on(x).handle, x.handle, on(x).handle, { lr: 1, beta1: 0.9, beta2: 0.9, eps: 1, weightDecay: 0 }, 1, device), /^m is on cpu, but device is 'cuda:\d+'/],
        ['native quantizeFp8', () => native.quantizeFp8(x.handle, 'e4m3', 1, device), /^x is on cpu, but device is 'cuda:\d+'/],
      ];
      test.each(cases)('%s', (_name, call, message) => {
        const error = thrown(call);
        expect(error).toBeInstanceOf(DeviceError);
        expect(error.message).toMatch(message);
      });
    });

    test('a disposed cuda operand is a DisposedError naming it', () => {
      const a = on(uniformTensor([4, 8], 8));
      const handle = a.handle;
      a.dispose();
      expect(() => native.groupedGemm(handle, on(uniformTensor([2, 3, 8], 9)).handle, [2, 2])).toThrow(/^a is a disposed tensor/);
    });
  }
});
