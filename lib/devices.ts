import { DeviceError } from './errors';
import { native } from './native';
import { describe } from './validate';

/** A compute device (DESIGN §2). cuda devices carry their index and name. */
export type Device =
  | { kind: 'cpu' }
  | { kind: 'cuda'; index: number; name: string; computeCapability?: number; totalMemory?: number; emulated?: boolean };

/** How a caller names a device: 'cpu', 'cuda' (= cuda:0, or MOEKIT_DEVICE), 'cuda:N', or a Device from devices(). */
export type DeviceSpec = 'cpu' | 'cuda' | `cuda:${number}` | Device;

/** The devices this process can use: cpu always; cuda ones when the binary has CUDA and a driver reports GPUs. */
export function devices(): Device[] {
  return native.devices().map((d) =>
    d.kind === 'cpu'
      ? { kind: 'cpu' }
      : {
          kind: 'cuda',
          index: d.index ?? 0,
          name: d.name ?? '',
          computeCapability: d.computeCapability,
          totalMemory: d.totalMemory,
          ...(d.emulated ? { emulated: true } : {}),
        },
  );
}

/** What the loaded binary was compiled with; commBackends: the dist.init backends it has. */
export function buildInfo(): { cuda: boolean; cudaArchitectures: string[]; emulated: boolean; commBackends: ('local' | 'mpi' | 'nccl')[] } {
  const info = native.buildInfo();
  return {
    cuda: info.cuda,
    cudaArchitectures: info.cudaArchitectures ? info.cudaArchitectures.split(',') : [],
    emulated: info.emulated,
    commBackends: info.commBackends as ('local' | 'mpi' | 'nccl')[],
  };
}

/**
 * The device 'cuda' names (DESIGN §2b): cuda:0, or the one MOEKIT_DEVICE gives ('cuda:N' or N),
 * read at each call.
 */
function defaultCudaIndex(): number {
  const env = process.env.MOEKIT_DEVICE;
  if (env === undefined || env === '') return 0;
  const match = /^(?:cuda:)?(\d+)$/.exec(env);
  if (!match) throw new DeviceError(`MOEKIT_DEVICE must be 'cuda:N' or N, got '${env}'`);
  return Number(match[1]);
}

/** The canonical name of a device spec ('cpu' or 'cuda:N'); throws DeviceError naming `name`. */
export function deviceName(spec: unknown, name: string): string {
  if (spec === 'cpu' || (typeof spec === 'object' && spec !== null && (spec as Device).kind === 'cpu')) return 'cpu';
  let index: number | undefined;
  if (spec === 'cuda') index = defaultCudaIndex();
  else if (typeof spec === 'string' && /^cuda:\d+$/.test(spec)) index = Number(spec.slice(5));
  else if (typeof spec === 'object' && spec !== null && (spec as Device).kind === 'cuda') index = (spec as { index: number }).index;
  if (index === undefined || !Number.isSafeInteger(index)) {
    throw new DeviceError(`${name} must be 'cpu', 'cuda', 'cuda:N' or a Device from devices(), got ${describe(spec)}`);
  }
  const available = devices();
  if (!available.some((d) => d.kind === 'cuda' && d.index === index)) {
    throw new DeviceError(
      `${name} is cuda:${index}, which is not available: devices() lists ${available.map((d) => (d.kind === 'cpu' ? 'cpu' : `cuda:${d.index}`)).join(', ')}`,
    );
  }
  return `cuda:${index}`;
}
