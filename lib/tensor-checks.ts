/** Argument checks on tensors, shared by the ops, losses and optimiser modules. */
import { DType } from './dtype';
import { ArgumentError, DeviceError, DTypeError, DisposedError, ShapeError } from './errors';
import { Tensor } from './tensor';
import { describe } from './validate';

/** `value` as a live Tensor of `dtype` with `rank` dimensions, on any device. */
export function checkTensor(value: unknown, name: string, dtype: DType, rank: number): Tensor {
  if (!Tensor.isTensor(value)) throw new ArgumentError(`${name} must be a ${dtype} Tensor, got ${describe(value)}`);
  if (value.disposed) throw new DisposedError(`${name} has been disposed and cannot be used`);
  if (value.dtype !== dtype) throw new DTypeError(`${name} must be a ${dtype} tensor, got ${value.dtype}`);
  if (value.shape.length !== rank) {
    throw new ShapeError(`${name} must have ${rank} dimension${rank === 1 ? '' : 's'}, got shape [${value.shape.join(', ')}]`);
  }
  return value;
}

/**
 * The device of one call's tensors, the first operand's: every other one given (null: an absent
 * optional tensor) must be on it, else DeviceError naming the first that is not.
 */
export function checkSameDevice(...operands: [name: string, tensor: Tensor | null][]): string {
  const [firstName, first] = operands[0];
  const device = (first as Tensor).device;
  for (const [name, t] of operands) {
    if (t && t.device !== device) throw new DeviceError(`${name} is on ${t.device}, ${firstName} on ${device}: every operand must be on one device`);
  }
  return device;
}

/**
 * The values of an f32 or i32 tensor for a check on the host: a cpu tensor's storage (zero-copy),
 * a copy of a cuda tensor's (toArray() waits for it).
 */
export function hostValues(t: Tensor): Float32Array | Int32Array {
  return (t.device === 'cpu' ? t.view() : t.toArray()) as Float32Array | Int32Array;
}

/** t.shape[dim] must equal `want`; `what` says where `want` comes from ("T = x.shape[0]"). */
export function checkDim(t: Tensor, name: string, dim: number, want: number, what: string): void {
  if (t.shape[dim] !== want) {
    throw new ShapeError(`${name} has shape [${t.shape.join(', ')}]: dimension ${dim} must equal ${what} = ${want}`);
  }
}
