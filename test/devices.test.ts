import { buildInfo, devices } from '../lib';

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
});
