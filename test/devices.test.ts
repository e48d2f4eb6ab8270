import { DeviceError, Tensor, buildInfo, devices } from '../lib';

describe('devices() (DESIGN §2, §5)', () => {
  test('lists cpu first, and cuda entries only with an index and a name', () => {
    const list = devices();
    expect(list[0]).toEqual({ kind: 'cpu' });
    for (const device of list.slice(1)) {
      expect(device.kind).toBe('cuda');
      if (device.kind === 'cuda') {
        expect(Number.isInteger(device.index)).toBe(true);
        expect(typeof device.name).toBe('string');
      }
    }
  });

  test('a binary compiled with CUDA names its architectures and still loads without a driver', () => {
    const info = buildInfo();
    expect(info.emulated).toBe(false);
    if (info.cuda) expect(info.cudaArchitectures.length).toBeGreaterThan(0);
    else expect(info.cudaArchitectures).toEqual([]);
  });

  test("MOEKIT_DEVICE that is not 'cuda:N' or N: 'cuda' throws DeviceError naming the variable (DESIGN §2b)", () => {
    const saved = process.env.MOEKIT_DEVICE;
    try {
      for (const bad of ['gpu1', 'cuda:', 'cuda:-1', '1.5']) {
        process.env.MOEKIT_DEVICE = bad;
        expect(() => Tensor.zeros([1], { device: 'cuda' })).toThrow(DeviceError);
        expect(() => Tensor.zeros([1], { device: 'cuda' })).toThrow(`MOEKIT_DEVICE must be 'cuda:N' or N, got '${bad}'`);
      }
      process.env.MOEKIT_DEVICE = 'cuda:0';
      expect(Tensor.zeros([1], { device: 'cpu' }).device).toBe('cpu');  // cpu does not read it
    } finally {
      if (saved === undefined) delete process.env.MOEKIT_DEVICE;
      else process.env.MOEKIT_DEVICE = saved;
    }
  });
});
