/**
 * cuda (DESIGN §2b): what moekit asked of a CUDA device — the counters of
 * native/cuda/device_counters.h, counted where moekit calls the CUDA runtime, so a real GPU and the
 * emulated one report alike.
 *
 *   cuda.stats(device = 'cuda')    counts since the last resetStats of that device
 *   cuda.resetStats(device)        every count to 0 (liveBytes stays, peakBytes = liveBytes)
 *   cuda.synchronize(device)       waits until the device has finished its work
 *
 * 'cuda' names cuda:0. A device that devices() does not list, or a build without CUDA, throws
 * DeviceError.
 */
import { DeviceSpec, deviceName } from './devices';
import { DeviceError } from './errors';
import { native } from './native';

export interface CudaStats {
  /** Bytes copied host → device. */
  hostToDeviceBytes: number;
  /** Bytes copied device → host. */
  deviceToHostBytes: number;
  /** Times the host waited for the device (stream or device synchronisations, blocking copies). */
  synchronizations: number;
  /** Device allocations made: cudaMallocAsync calls that grew the device's memory pool. */
  allocations: number;
  /** Kernel launches. */
  launches: number;
  /** Bytes of device memory in use now: tensors, the layers' state and saved activations, scratch of running calls (not reset). */
  liveBytes: number;
  /** The most liveBytes held since the last reset. */
  peakBytes: number;
  /** liveBytes + the idle blocks the memory pool keeps for the next request (not reset). */
  reservedBytes: number;
}

function cudaDevice(device: unknown): string {
  const name = deviceName(device ?? 'cuda', 'device');
  if (name === 'cpu') throw new DeviceError(`device must be a cuda device ('cuda', 'cuda:N'), got 'cpu'`);
  return name;
}

export const cuda = {
  stats(device?: DeviceSpec): CudaStats {
    return native.cudaStats(cudaDevice(device));
  },
  resetStats(device?: DeviceSpec): void {
    native.cudaResetStats(cudaDevice(device));
  },
  synchronize(device?: DeviceSpec): void {
    native.cudaSynchronize(cudaDevice(device));
  },
};
