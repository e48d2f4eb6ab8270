import { native } from './native';

/** Bytes of tensor storage the addon holds right now (its own allocation counter). */
export function liveBytes(): number {
  return native.liveBytes();
}
