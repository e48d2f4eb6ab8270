import { DTypeError } from './errors';
import { describe } from './validate';

/** Element types (DESIGN §2). */
export type DType = 'f32' | 'bf16' | 'f16' | 'i32' | 'u8' | 'e4m3' | 'e5m2';

/** Native dtype codes: the order of native/core/dtype.h. */
export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32', 'u8', 'e4m3', 'e5m2'];

export const ELEMENT_SIZE: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4, u8: 1, e4m3: 1, e5m2: 1 };

export function isFloatDType(dtype: DType): boolean {
  return dtype !== 'i32' && dtype !== 'u8';
}

export function dtypeCode(dtype: DType): number {
  return DTYPES.indexOf(dtype);
}

export function dtypeFromCode(code: number): DType {
  const dtype = DTYPES[code];
  if (dtype === undefined) throw new DTypeError(`dtype code ${code} is unknown`);
  return dtype;
}

/** Checks that `value` names a dtype; `name` is the argument's name for the message. */
export function checkDType(value: unknown, name: string): DType {
  if (typeof value === 'string' && (DTYPES as readonly string[]).includes(value)) return value as DType;
  throw new DTypeError(`${name} must be one of ${DTYPES.join(', ')}, got ${describe(value)}`);
}
