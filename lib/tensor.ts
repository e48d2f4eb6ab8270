/**
 * Tensor (DESIGN §2): an n-dimensional array in native, 64-byte-aligned storage.
 *
 * - `from()` copies data in: a Float32Array (or number[]) is converted to the dtype with
 *   round-to-nearest-even (fp8 saturating, F1); a Uint16Array for bf16/f16 and a Uint8Array for
 *   e4m3/e5m2 are taken as raw bits; Int32Array → i32, Uint8Array → u8.
 * - `view()` is zero-copy: the returned typed array aliases the native storage (cpu tensors only).
 * - `toArray()` is a copy; float dtypes decode to Float32Array.
 * - `dispose()` frees the storage at once; views become empty and any later use throws
 *   DisposedError.
 * - `device` is where the storage lives ('cpu' or 'cuda:N', only devices that devices() lists;
 *   DESIGN §2b). A cuda tensor's storage is memory of that device: it has no host view (`view()`
 *   throws DeviceError), `toArray()` and `to('cpu')` copy it down and wait for the copy, and
 *   `from()` / `randn()` with a cuda device copy the values up once (through pinned staging).
 */
import { DeviceSpec, deviceName } from './devices';
import { DType, DTYPES, checkDType, dtypeCode, dtypeFromCode, isFloatDType } from './dtype';
import { DTypeError, DisposedError, ShapeError } from './errors';
import { NativeTensor, native } from './native';
import { checkFiniteNumber, checkObject, checkSeed, checkShape, describe, numelOf } from './validate';

export type TensorData = Float32Array | Int32Array | Uint8Array | Uint16Array | number[];
export type TensorView = Float32Array | Int32Array | Uint8Array | Uint16Array;

export interface TensorOptions {
  dtype?: DType;
  device?: DeviceSpec;
}

export interface RandnOptions extends TensorOptions {
  seed: number;
  std?: number;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: string;
  #handle: NativeTensor;

  private constructor(handle: NativeTensor) {
    this.#handle = handle;
    this.shape = Object.freeze(handle.shape);
    this.dtype = dtypeFromCode(handle.dtype);
    this.device = handle.device;
  }

  /** True for a tensor made by moekit (not for an object that merely inherits Tensor.prototype). */
  static isTensor(value: unknown): value is Tensor {
    return typeof value === 'object' && value !== null && #handle in value;
  }

  /** Wraps a native tensor (for the modules of this package). @internal */
  static wrap(handle: NativeTensor): Tensor {
    return new Tensor(handle);
  }

  static from(data: TensorData, shape: number[], opts: TensorOptions = {}): Tensor {
    const dims = checkShape(shape, 'shape');
    const { dtype, device } = resolveOptions(opts, defaultDType(data));
    const numel = numelOf(dims);
    const length = Array.isArray(data) ? data.length : ArrayBuffer.isView(data) ? (data as TensorView).length : -1;
    if (length < 0) throw new DTypeError(`data must be a Float32Array, Int32Array, Uint8Array, Uint16Array or number[], got ${describe(data)}`);
    if (length !== numel) throw new ShapeError(`data has ${length} elements but shape [${dims.join(', ')}] needs ${numel}`);
    const code = dtypeCode(dtype);
    if (Array.isArray(data)) return new Tensor(native.NativeTensor.fromData(numbersFor(data, dtype), code, dims, !isFloatDType(dtype), device));
    const kind = typedArrayKind(data);
    if (kind === 'Float32Array') {
      if (!isFloatDType(dtype)) throw new DTypeError(`data is a Float32Array, which cannot fill dtype ${dtype}; pass an ${dtype === 'i32' ? 'Int32Array' : 'Uint8Array'}`);
      return new Tensor(native.NativeTensor.fromData(data, code, dims, false, device));
    }
    const rawKinds: Record<string, DType[]> = { Int32Array: ['i32'], Uint8Array: ['u8', 'e4m3', 'e5m2'], Uint16Array: ['bf16', 'f16'] };
    const accepted = Object.hasOwn(rawKinds, kind) ? rawKinds[kind] : undefined;
    if (!accepted || !accepted.includes(dtype)) {
      throw new DTypeError(`data is a ${kind}, which holds raw ${accepted ? accepted.join('/') : 'values of no moekit dtype'}, not dtype ${dtype}`);
    }
    return new Tensor(native.NativeTensor.fromData(data, code, dims, true, device));
  }

  static zeros(shape: number[], opts: TensorOptions = {}): Tensor {
    const dims = checkShape(shape, 'shape');
    const { dtype, device } = resolveOptions(opts, 'f32');
    return new Tensor(new native.NativeTensor(dtypeCode(dtype), dims, device));
  }

  /** Normal(0, std²) from Philox-4x32-10 keyed by `seed`: the same seed gives the same tensor everywhere. */
  static randn(shape: number[], opts: RandnOptions): Tensor {
    const dims = checkShape(shape, 'shape');
    const o = checkObject(opts, 'opts');
    const seed = checkSeed(o.seed, 'opts.seed');
    const std = o.std === undefined ? 1 : checkFiniteNumber(o.std, 'opts.std');
    const { dtype, device } = resolveOptions(opts, 'f32');
    if (!isFloatDType(dtype)) throw new DTypeError(`opts.dtype must be a float dtype for randn, got ${dtype}`);
    return new Tensor(native.NativeTensor.randn(dims, seed, std, dtypeCode(dtype), device));
  }

  get numel(): number {
    return numelOf(this.shape);
  }

  get nbytes(): number {
    return this.#handle.nbytes;
  }

  get disposed(): boolean {
    return this.#handle.disposed;
  }

  /** The native tensor, for the modules of this package. @internal */
  get handle(): NativeTensor {
    if (this.#handle.disposed) throw new DisposedError('tensor has been disposed and cannot be used');
    return this.#handle;
  }

  /** A copy of the values: Float32Array for float dtypes, Int32Array for i32, Uint8Array for u8. */
  toArray(): Float32Array | Int32Array | Uint8Array {
    return this.handle.toArray();
  }

  /**
   * Zero-copy typed array over the storage (raw bits for bf16/f16/fp8). Empty after dispose().
   * A cuda tensor has none: DeviceError (copy it with toArray() or to('cpu')).
   */
  view(): TensorView {
    return new VIEW_TYPES[this.dtype](this.handle.view());
  }

  /**
   * Overwrites the values in place, on any device: from a tensor of the same dtype and shape (on
   * any device), or from a typed array holding the storage's raw values as view() shows them
   * (Float32Array for f32, Int32Array for i32, Uint16Array bits for bf16/f16, Uint8Array for
   * e4m3/e5m2/u8) with as many elements. A cuda tensor's values go up through pinned staging.
   */
  write(source: Tensor | TensorView): void {
    if (Tensor.isTensor(source)) {
      this.handle.copyFrom(source.handle);
      return;
    }
    const want = VIEW_TYPES[this.dtype].name;
    if (typedArrayKind(source) !== want) throw new DTypeError(`source must be a Tensor or a ${want} for a ${this.dtype} tensor, got ${describe(source)}`);
    if ((source as TensorView).length !== this.numel) throw new ShapeError(`source has ${(source as TensorView).length} elements, the tensor ${this.numel}`);
    this.handle.write(source as TensorView);
  }

  /** A converted copy: to a dtype (RNE; fp8 saturating) or to a device. */
  to(target: DType | DeviceSpec): Tensor {
    if (typeof target === 'string' && (DTYPES as readonly string[]).includes(target)) {
      return new Tensor(this.handle.cast(dtypeCode(target as DType)));
    }
    return new Tensor(this.handle.cast(dtypeCode(this.dtype), deviceName(target, 'target')));
  }

  dispose(): void {
    this.#handle.dispose();
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

/** The typed array of each dtype's raw storage values, as view() shows them and write() takes them. */
const VIEW_TYPES: Record<DType, new (buffer: ArrayBuffer) => TensorView> = {
  f32: Float32Array, i32: Int32Array, bf16: Uint16Array, f16: Uint16Array, e4m3: Uint8Array, e5m2: Uint8Array, u8: Uint8Array,
};

/**
 * The typed-array class of `data` by its built-in tag, which holds across realms (a Float32Array
 * made by the addon or in a vm context is not `instanceof` this realm's Float32Array).
 */
function typedArrayKind(data: unknown): string {
  return Object.prototype.toString.call(data).slice(8, -1);
}

function defaultDType(data: TensorData): DType {
  const defaults: Record<string, DType> = { Int32Array: 'i32', Uint8Array: 'u8', Uint16Array: 'bf16' };
  return defaults[typedArrayKind(data)] ?? 'f32';
}

function resolveOptions(opts: TensorOptions, fallback: DType): { dtype: DType; device: string } {
  const o = checkObject(opts, 'opts');
  const dtype = o.dtype === undefined ? fallback : checkDType(o.dtype, 'opts.dtype');
  const device = o.device === undefined ? 'cpu' : deviceName(o.device, 'opts.device');
  return { dtype, device };
}

/** number[] → the typed array from() hands to native code, checking integer dtypes' ranges. */
function numbersFor(data: number[], dtype: DType): Float32Array | Int32Array | Uint8Array {
  if (isFloatDType(dtype)) {
    data.forEach((v, i) => {
      if (typeof v !== 'number') throw new DTypeError(`data[${i}] must be a number, got ${describe(v)}`);
    });
    return Float32Array.from(data);
  }
  const [lo, hi] = dtype === 'i32' ? [-2147483648, 2147483647] : [0, 255];
  data.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new DTypeError(`data[${i}] must be an integer in [${lo}, ${hi}] for dtype ${dtype}, got ${describe(v)}`);
    }
  });
  return dtype === 'i32' ? Int32Array.from(data) : Uint8Array.from(data);
}
