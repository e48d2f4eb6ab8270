/**
 * ops on every device (DESIGN §2b: ops take cuda tensors and return tensors on the same device;
 * issue #17 item 5). Run per device (test/helpers/devices.ts): on a cuda device the op must run its
 * CUDA kernel — cuda.stats shows the launch and the bytes — and equal the cpu's result exactly.
 * Covered so far: quantizeFp8 (the rest of ops.* still refuses cuda tensors with DeviceError).
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
