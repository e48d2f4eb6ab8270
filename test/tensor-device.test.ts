/**
 * Tensors on a cuda device (DESIGN §2b): their storage is device memory. Bytes reach it by copy
 * (from, write, randn, to) and leave it by copy (toArray, to('cpu')); there is no host view.
 * cuda.stats counts every byte moved and every wait. Run on the emulated cuda device (project
 * cuda-emulated) and on any real one the cpu project lists; without a cuda device, making a cuda
 * tensor is a DeviceError.
 */
import { DType, DeviceError, Tensor, TensorData, cuda, devices } from '../lib';
import { prng } from './helpers/random';

const cudaDevices = devices().flatMap((d) => (d.kind === 'cuda' ? [`cuda:${d.index}` as const] : []));

/** The storage bytes of a tensor on any device. */
function bits(t: Tensor): number[] {
  const host = t.to('cpu');
  const out = Array.from(new Uint8Array(host.view().buffer.slice(0)));
  host.dispose();
  return out;
}

/** Raw data of every dtype, every code of the 8- and 16-bit ones among it (NaNs and infinities too). */
function rawData(dtype: DType, n: number): TensorData {
  const next = prng(n);
  switch (dtype) {
    case 'f32': return Float32Array.from({ length: n }, (_, i) => (i === 0 ? -0 : (next() - 0.5) * 2 ** (i % 60 - 30)));
    case 'i32': return Int32Array.from({ length: n }, () => Math.floor((next() - 0.5) * 2 ** 32));
    case 'bf16':
    case 'f16': return Uint16Array.from({ length: n }, (_, i) => (i * 257) & 0xffff);
    default: return Uint8Array.from({ length: n }, (_, i) => i & 0xff);
  }
}

const DTYPES: DType[] = ['f32', 'bf16', 'f16', 'i32', 'u8', 'e4m3', 'e5m2'];

if (cudaDevices.length === 0) {
  test('without a cuda device, a cuda tensor is a DeviceError', () => {
    expect(() => Tensor.zeros([2], { device: 'cuda:0' })).toThrow(DeviceError);
  });
} else describe.each(cudaDevices)('tensors on %s', (device) => {
  test.each(DTYPES)('%s: from → toArray / to(cpu) round trip, bit-equal', (dtype) => {
    const data = rawData(dtype, 512);
    const onCpu = Tensor.from(data, [16, 32], { dtype });
    const onDevice = Tensor.from(data, [16, 32], { dtype, device });
    expect([onDevice.device, onDevice.dtype, onDevice.shape]).toEqual([device, dtype, [16, 32]]);
    expect(bits(onDevice)).toEqual(bits(onCpu));
    const got = onDevice.toArray(), want = onCpu.toArray();
    expect(Object.prototype.toString.call(got)).toBe(Object.prototype.toString.call(want));
    expect(Array.from(new Uint8Array(got.buffer))).toEqual(Array.from(new Uint8Array(want.buffer)));
  });

  test('view() of a cuda tensor is a DeviceError that says how to copy it', () => {
    const t = Tensor.zeros([3], { device });
    expect(() => t.view()).toThrow(DeviceError);
    expect(() => t.view()).toThrow(/has no host view; copy it with toArray\(\) or to\('cpu'\)/);
  });

  test('to(cpu), to(device) and casts across devices', () => {
    const source = Tensor.from(rawData('f32', 300), [300]);
    const up = source.to(device);
    expect(up.device).toBe(device);
    const down = up.to('cpu');
    expect(down.device).toBe('cpu');
    expect(bits(down)).toEqual(bits(source));
    expect(bits(up.to(device))).toEqual(bits(source));  // device → same device
    for (const dtype of ['bf16', 'f16', 'e4m3', 'e5m2'] as const) {
      const cast = up.to(dtype);
      expect([cast.device, cast.dtype]).toEqual([device, dtype]);
      expect(bits(cast)).toEqual(bits(source.to(dtype)));
      expect(bits(cast.to('f32'))).toEqual(bits(source.to(dtype).to('f32')));
    }
  });

  test('dispose frees the device memory: 50 create/dispose cycles hold no more and allocate nothing after the first', () => {
    const cycle = () => Tensor.zeros([1000], { device }).dispose();
    cycle();
    const before = cuda.stats(device).liveBytes;
    cuda.resetStats(device);
    for (let i = 0; i < 50; i++) cycle();
    const s = cuda.stats(device);
    expect(s.liveBytes).toBeLessThanOrEqual(before);
    expect(s.allocations).toBe(0);
    const t = Tensor.zeros([4], { device });
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.toArray()).toThrow(/disposed/);
  });

  test('zero() and write() change the device bytes', () => {
    const t = Tensor.from(Float32Array.from([1, 2, 3, 4]), [4], { device });
    t.handle.zero();
    expect(Array.from(t.toArray())).toEqual([0, 0, 0, 0]);
    t.handle.write(Float32Array.from([5, -6, 7.5, 8]));
    expect(Array.from(t.toArray())).toEqual([5, -6, 7.5, 8]);
    expect(() => t.handle.write(Float32Array.from([1]))).toThrow(/data has 4 bytes, the tensor 16/);
  });

  test.each(['f32', 'bf16'] as const)('randn (%s) on the device equals randn on the cpu bit for bit', (dtype) => {
    const want = Tensor.randn([7, 33], { seed: 42, std: 0.5, dtype });
    const got = Tensor.randn([7, 33], { seed: 42, std: 0.5, dtype, device });
    expect(got.device).toBe(device);
    expect(bits(got)).toEqual(bits(want));
  });

  test('cuda.stats: from() of N bytes moves N bytes up; toArray() N bytes down with one wait', () => {
    const data = rawData('f32', 1234) as Float32Array;
    cuda.resetStats(device);
    const t = Tensor.from(data, [1234], { device });
    const up = cuda.stats(device);
    expect([up.hostToDeviceBytes, up.deviceToHostBytes]).toEqual([data.byteLength, 0]);
    cuda.resetStats(device);
    t.toArray();
    const down = cuda.stats(device);
    expect([down.hostToDeviceBytes, down.deviceToHostBytes, down.synchronizations]).toEqual([0, data.byteLength, 1]);
  });
});
