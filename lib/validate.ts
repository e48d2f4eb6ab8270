/**
 * One-line predicates and argument checks shared by the facade. Each failure names the argument,
 * what was expected and what was received (sharp's convention). Native code checks again.
 */
import { ArgumentError, ShapeError } from './errors';

/** Largest element count of one tensor (native/core/shape.h: kernels index with int32). */
export const MAX_ELEMENTS = 2147483647;
export const MAX_RANK = 8;

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name} of length ${(value as unknown as { length?: number }).length ?? value.byteLength}`;
  if (typeof value === 'number') return `number ${value}`;
  if (typeof value === 'string') return `string "${value.length > 40 ? value.slice(0, 40) + '…' : value}"`;
  if (typeof value === 'object') return value.constructor?.name ? `${value.constructor.name} object` : 'object';
  return typeof value;
}

export function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** A shape: array of ≤ 8 non-negative integers with at most MAX_ELEMENTS elements in all. */
export function checkShape(value: unknown, name: string): number[] {
  if (!Array.isArray(value)) throw new ShapeError(`${name} must be an array of non-negative integers, got ${describe(value)}`);
  if (value.length > MAX_RANK) throw new ShapeError(`${name} must have at most ${MAX_RANK} dimensions, got ${value.length}`);
  let numel = 1;
  value.forEach((dim: unknown, i: number) => {
    if (!isNonNegativeInteger(dim)) throw new ShapeError(`${name}[${i}] must be a non-negative integer, got ${describe(dim)}`);
    numel *= dim;
  });
  if (numel > MAX_ELEMENTS) {
    throw new ShapeError(`${name} [${value.join(', ')}] has ${numel} elements; a tensor holds at most 2^31-1`);
  }
  return value.slice() as number[];
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function checkFiniteNumber(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ArgumentError(`${name} must be a finite number, got ${describe(value)}`);
  return value;
}

export function checkSeed(value: unknown, name: string): number {
  if (!isNonNegativeInteger(value)) throw new ArgumentError(`${name} must be an integer in [0, 2^53-1], got ${describe(value)}`);
  return value;
}

export function checkObject(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArgumentError(`${name} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** An integer in [lo, hi]. */
export function checkInteger(value: unknown, name: string, lo: number, hi: number = MAX_ELEMENTS): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) {
    throw new ArgumentError(`${name} must be an integer in [${lo}, ${hi}], got ${describe(value)}`);
  }
  return value;
}

/** An array of `length` integers ≥ `min` summing to `sum` (named by `sumWhat`). */
export function checkSizes(value: unknown, name: string, length: number | null, min: number, sum: number, sumWhat: string): number[] {
  if (!Array.isArray(value)) throw new ArgumentError(`${name} must be an array of integers, got ${describe(value)}`);
  if (length !== null && value.length !== length) throw new ShapeError(`${name} must have ${length} entries, got ${value.length}`);
  const sizes = value.map((v: unknown, i: number) => checkInteger(v, `${name}[${i}]`, min));
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total !== sum) throw new ShapeError(`${name} must sum to ${sumWhat} = ${sum}, got ${total}`);
  return sizes;
}

/** Rejects keys of `opts` not in `keys` (typos surface instead of being ignored). */
export function checkKeys(opts: Record<string, unknown>, name: string, keys: readonly string[]): void {
  for (const key of Object.keys(opts)) {
    if (!keys.includes(key)) throw new ArgumentError(`${name}.${key} is not an option; options: ${keys.join(', ')}`);
  }
}
