import {
  ArgumentError,
  DeviceError,
  DisposedError,
  DTypeError,
  ShapeError,
  Tensor,
} from '../lib';
import { native } from '../lib/native';
import { ErrorCase, expectTypedError } from './helpers/expect-error';


const disposed = Tensor.zeros([2]);
disposed.dispose();

// Each case: what is misused, the call, the error class (DESIGN §4) and a pattern the message must match
// (the argument's name and what was expected).
const cases: ErrorCase[] = [
  ['shape not an array', () => Tensor.zeros('3' as unknown as number[]), ShapeError, /shape must be an array/],
  ['negative dimension', () => Tensor.zeros([2, -1]), ShapeError, /shape\[1\] must be a non-negative integer/],
  ['fractional dimension', () => Tensor.zeros([2.5]), ShapeError, /shape\[0\]/],
  ['NaN dimension', () => Tensor.zeros([NaN]), ShapeError, /shape\[0\].*NaN/],
  ['Infinity dimension', () => Tensor.zeros([Infinity]), ShapeError, /shape\[0\]/],
  ['huge shape', () => Tensor.zeros([65536, 65536]), ShapeError, /at most 2\^31-1/],
  ['rank above 8', () => Tensor.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1]), ShapeError, /at most 8 dimensions/],
  ['data length ≠ numel', () => Tensor.from([1, 2, 3], [2, 2]), ShapeError, /data has 3 elements but shape \[2, 2\] needs 4/],
  ['unknown dtype', () => Tensor.zeros([2], { dtype: 'f64' as never }), DTypeError, /opts\.dtype must be one of/],
  ['Float32Array for i32', () => Tensor.from(new Float32Array(2), [2], { dtype: 'i32' }), DTypeError, /Float32Array.*i32/],
  ['Int32Array for f32', () => Tensor.from(new Int32Array(2), [2], { dtype: 'f32' }), DTypeError, /Int32Array.*f32/],
  ['Uint16Array for e4m3', () => Tensor.from(new Uint16Array(2), [2], { dtype: 'e4m3' }), DTypeError, /Uint16Array/],
  ['Float64Array data', () => Tensor.from(new Float64Array(2) as never, [2]), DTypeError, /Float64Array/],
  ['fraction for i32', () => Tensor.from([1.5], [1], { dtype: 'i32' }), DTypeError, /data\[0\] must be an integer/],
  ['out of range u8', () => Tensor.from([256], [1], { dtype: 'u8' }), DTypeError, /\[0, 255\]/],
  ['string in data', () => Tensor.from(['a' as unknown as number], [1]), DTypeError, /data\[0\] must be a number/],
  ['randn without seed', () => Tensor.randn([2], {} as never), ArgumentError, /opts\.seed must be an integer/],
  ['randn negative seed', () => Tensor.randn([2], { seed: -1 }), ArgumentError, /opts\.seed/],
  ['randn NaN std', () => Tensor.randn([2], { seed: 1, std: NaN }), ArgumentError, /opts\.std must be a finite number/],
  ['randn integer dtype', () => Tensor.randn([2], { seed: 1, dtype: 'i32' }), DTypeError, /float dtype/],
  ['unknown device', () => Tensor.zeros([2], { device: 'tpu' as never }), DeviceError, /opts\.device must be 'cpu', 'cuda'/],
  ['unavailable device', () => Tensor.zeros([2], { device: 'cuda:7' }), DeviceError, /cuda:7/],
  ['opts not an object', () => Tensor.zeros([2], 5 as never), ArgumentError, /opts must be an object/],
  ['disposed tensor read', () => disposed.toArray(), DisposedError, /disposed/],
  ['disposed tensor cast', () => disposed.to('f16'), DisposedError, /disposed/],
  ['to() unknown target', () => Tensor.zeros([1]).to('f64' as never), DeviceError, /target must be/],
  // the addon called directly, bypassing the facade: native checks still hold
  ['native: bad dtype code', () => new native.NativeTensor(99, [1]), DTypeError, /dtype must be a dtype code/],
  ['native: shape of strings', () => new native.NativeTensor(0, ['a' as never]), ShapeError, /shape\[0\]/],
  ['native: huge shape', () => new native.NativeTensor(0, [2 ** 40]), ShapeError, /exceeds the largest tensor/],
  ['native: raw byte count', () => native.NativeTensor.fromData(new Uint8Array(3), 0, [1], true), ShapeError, /3 bytes but shape \[1\] of f32 needs 4/],
  ['native: encode into u8', () => native.NativeTensor.fromData(new Float32Array(1), 4, [1], false), DTypeError, /u8 cannot be encoded/],
  ['native: non-typed data', () => native.NativeTensor.fromData([1] as never, 0, [1], true), ArgumentError, /data must be a typed array/],
  ['native: randn seed', () => native.NativeTensor.randn([1], -3, 1, 0), ArgumentError, /seed must be an integer/],
  ['native: wrong arity', () => native.NativeTensor.randn([1] as never, 1, 1, undefined as never), DTypeError, /dtype/],
];

describe('bad arguments throw typed errors naming the argument (DESIGN §4)', () => {
  test('there are at least 20 cases', () => expect(cases.length).toBeGreaterThanOrEqual(20));
  test.each(cases)('%s', (_name, call, errorClass, message) => expectTypedError(call, errorClass, message));
});
