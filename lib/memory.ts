import { native } from './native';

/** Bytes of tensor storage the addon holds right now (its own allocation counter). */
export function liveBytes(): number {
  return native.liveBytes();
}

/**
 * Bytes of host memory a new allocation may take now: MemAvailable + SwapFree, lowered to the
 * process's cgroup headroom (native/cpu/host_memory.h). Tensors of 64 MiB and more, and whole
 * layers, are checked against it before anything is allocated.
 */
export function availableMemory(): number {
  return native.availableMemory();
}
