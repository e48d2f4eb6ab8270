/**
 * ops on every device (DESIGN §2b: ops take cuda tensors and return tensors on the same device;
 * issue #17 item 5). Run per device (test/helpers/devices.ts): on a cuda device the op must run its
 * CUDA kernel — cuda.stats shows the launch and the bytes — and equal the cpu's result exactly.
 * Covered so far: quantizeFp8 and groupedGemmFp8 (the rest of ops.* still refuses cuda tensors
 * with DeviceError).
 */
import { MoekitError, Tensor, cuda, ops } from '../lib';
import { describeOnDevices } from './helpers/devices';
import { uniformTensor } from './helpers/random';

describeOnDevices((device) => {
  describe('ops.quantizeFp8', () => {
    test.each([
      ['activations [M,K], 1 × 128 blocks, e4m3', [37, 300], [1, 128], 'e4m3'],
      ['weights [G,N,K], 128 × 128 blocks, e5m2', [2, 130, 200], [128, 128], 'e5m2'],
    ] as const)('%s: on the device, bit-equal to the cpu', (_name, shape, block, format) => {
      const values = uniformTensor([...shape], 3, 4).toArray() as Float32Array;
      values[5] = 1e30;  // a block whose amax saturates the others to ±0
      const x = Tensor.from(values, [...shape]);
      const want = ops.quantizeFp8(x, { block: [...block], format });
      const onDevice = x.to(device);
      if (device !== 'cpu') cuda.resetStats(device);
      const got = ops.quantizeFp8(onDevice, { block: [...block], format });
      expect([got.q.device, got.scales.device]).toEqual([device, device]);
      expect(Array.from(new Uint8Array(got.q.view().buffer.slice(0)))).toEqual(Array.from(new Uint8Array(want.q.view().buffer.slice(0))));
      expect(Array.from(got.scales.toArray())).toEqual(Array.from(want.scales.toArray()));
      if (device !== 'cpu') {
        const s = cuda.stats(device);
        expect(s.launches).toBeGreaterThan(0);
        expect(s.hostToDeviceBytes).toBe(x.nbytes);  // x up; codes and scales down
        expect(s.deviceToHostBytes).toBe(got.q.nbytes + got.scales.nbytes);
      }
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

    test('exact operands (scales 2^-7, codes multiples of 64): on the device, bit-equal to the cpu', () => {
      const a = ops.quantizeFp8(halves([M, K], 1, 1), { block: [1, 128] });
      const b = ops.quantizeFp8(halves([4, N, K], 2, 128), { block: [128, 128] });
      expect(new Set([...a.scales.toArray(), ...b.scales.toArray()])).toEqual(new Set([2 ** -7]));
      const want = ops.groupedGemmFp8(a, b, sizes);
      const on = (t: Tensor) => t.to(device);
      if (device !== 'cpu') cuda.resetStats(device);
      const got = ops.groupedGemmFp8({ q: on(a.q), scales: on(a.scales) }, { q: on(b.q), scales: on(b.scales) }, sizes);
      expect(got.device).toBe(device);
      expect(Array.from(got.toArray())).toEqual(Array.from(want.toArray()));
      if (device !== 'cpu') expect(cuda.stats(device).launches).toBeGreaterThan(0);
    });

    test('random values: on the device, within 1e-6 relative of the cpu (fp32 block sums in the tensor cores\' order)', () => {
      const a = ops.quantizeFp8(uniformTensor([M, K], 3), { block: [1, 128] });
      const b = ops.quantizeFp8(uniformTensor([4, N, K], 4), { block: [128, 128] });
      const want = ops.groupedGemmFp8(a, b, sizes).toArray();
      const on = (t: Tensor) => t.to(device);
      const got = ops.groupedGemmFp8({ q: on(a.q), scales: on(a.scales) }, { q: on(b.q), scales: on(b.scales) }, sizes).toArray();
      let d = 0, n = 0;
      for (let i = 0; i < want.length; i++) { d += (got[i] - want[i]) ** 2; n += want[i] ** 2; }
      expect(Math.sqrt(d / n)).toBeLessThan(1e-6);
    });

    if (device !== 'cpu') {
      test('e5m2 operands, and operands on different devices, are typed errors', () => {
        const a = ops.quantizeFp8(uniformTensor([4, 16], 5), { block: [1, 128], format: 'e5m2' });
        const b = ops.quantizeFp8(uniformTensor([1, 8, 16], 6), { block: [128, 128], format: 'e5m2' });
        const on = (t: Tensor) => t.to(device);
        expect(() => ops.groupedGemmFp8({ q: on(a.q), scales: on(a.scales) }, { q: on(b.q), scales: on(b.scales) }, [4])).toThrow(/^a\.q: the CUDA kernel multiplies e4m3 codes, got e5m2/);
        expect(() => ops.groupedGemmFp8({ q: on(a.q), scales: a.scales }, { q: on(b.q), scales: on(b.scales) }, [4])).toThrow(/^a\.scales is on cpu, a\.q on cuda/);
      });
    }
  });

  if (device !== 'cpu') {
    test('the other ops still refuse a cuda tensor with a typed error naming it', () => {
      const x = uniformTensor([4, 8], 1).to(device);
      let error: unknown;
      try {
        ops.groupedGemm(x, uniformTensor([2, 3, 8], 2).to(device), [2, 2]);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(MoekitError);
      expect((error as Error).name).toBe('DeviceError');
    });
  }
});
