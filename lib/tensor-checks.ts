/** Argument checks on tensors, shared by the ops, losses and optimiser modules. */
import { DType } from './dtype';
import { ArgumentError, DeviceError, DTypeError, DisposedError, ShapeError } from './errors';
import { Tensor } from './tensor';
import { describe } from './validate';

/**
 * `value` as a live Tensor of `dtype` with `rank` dimensions, on the cpu unless `anyDevice` (the
 * ops and losses modules run on the cpu backend in this version; the layer and AdamW run on every
 * device).
 */
export function checkTensor(value: unknown, name: string, dtype: DType, rank: number, anyDevice = false): Tensor {
  if (!Tensor.isTensor(value)) throw new ArgumentError(`${name} must be a ${dtype} Tensor, got ${describe(value)}`);
  if (value.disposed) throw new DisposedError(`${name} has been disposed and cannot be used`);
  if (value.dtype !== dtype) throw new DTypeError(`${name} must be a ${dtype} tensor, got ${value.dtype}`);
  if (value.shape.length !== rank) {
    throw new ShapeError(`${name} must have ${rank} dimension${rank === 1 ? '' : 's'}, got shape [${value.shape.join(', ')}]`);
  }
  if (!anyDevice && value.device !== 'cpu') {
    throw new DeviceError(`${name} is on ${value.device}: this function runs on the cpu backend in this version (use ${name}.to('cpu'))`);
  }
  return value;
}

/** t.shape[dim] must equal `want`; `what` says where `want` comes from ("T = x.shape[0]"). */
export function checkDim(t: Tensor, name: string, dim: number, want: number, what: string): void {
  if (t.shape[dim] !== want) {
    throw new ShapeError(`${name} has shape [${t.shape.join(', ')}]: dimension ${dim} must equal ${what} = ${want}`);
  }
}
