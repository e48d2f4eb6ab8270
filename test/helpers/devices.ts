/**
 * The devices a backend-parametrised suite runs on (issue #5): the layer and its tests are written
 * once, and run per device. jest.config.js has three projects:
 *   cpu            every suite on the normal build; devices: cpu, plus every cuda device the
 *                  build lists (a real GPU)
 *   cuda-emulated  the parametrised suites again with MOEKIT_EMULATE_CUDA=1 (test/setup/
 *                  emulated-cuda.js), so the emulated build loads; devices: its emulated cuda
 *                  device only (cpu already ran in the first project)
 *   cuda-emulated-sm90  the golden and precision suites on that device at compute capability 9.0
 *                  (test/setup/emulated-cuda-sm90.js)
 */
import { devices } from '../../lib';

export type DeviceName = 'cpu' | `cuda:${number}`;

export const EMULATED_PROJECT = process.env.MOEKIT_TEST_PROJECT?.startsWith('cuda-emulated') ?? false;

/** Device names ('cpu', 'cuda:N') for describe.each. */
export function layerDevices(): DeviceName[] {
  const cuda = devices().flatMap((d): DeviceName[] => (d.kind === 'cuda' ? [`cuda:${d.index}`] : []));
  return EMULATED_PROJECT ? cuda : ['cpu', ...cuda];
}

/**
 * describe.each over layerDevices(). When the list is empty (the emulated project without an
 * emulated build) one test says so: it fails in CI, which always builds it, and is skipped with
 * that title elsewhere.
 */
export function describeOnDevices(body: (device: DeviceName) => void): void {
  let list: DeviceName[] = [];
  let problem = 'the loaded build lists no cuda device';
  try {
    list = layerDevices();
  } catch (error) {
    problem = String(error);
  }
  if (list.length === 0) {
    (process.env.CI ? test : test.skip)(`a device to run on (${EMULATED_PROJECT ? 'emulated cuda' : 'cpu'})`, () => {
      throw new Error(problem);
    });
    return;
  }
  describe.each(list)('on %s', body);
}
