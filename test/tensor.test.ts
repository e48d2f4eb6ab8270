import { execFileSync } from 'child_process';
import * as path from 'path';
import { DisposedError, DType, liveBytes, Tensor } from '../lib';
import { loadGolden } from './helpers/golden';

/** Reference IEEE binary16 decoder written from the format's definition, independent of native code. */
function decodeHalfReference(code: number): number {
  const sign = code & 0x8000 ? -1 : 1;
  const exponent = (code >> 10) & 0x1f;
  const mantissa = code & 0x3ff;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

const allCodes16 = Uint16Array.from({ length: 65536 }, (_, i) => i);
const allCodes8 = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('Tensor round trips (DESIGN §2)', () => {
  test('f32 values survive from() → toArray() unchanged', () => {
    const data = Float32Array.from([0, -0, 1.5, -3.25, 1e-40, 3.4e38, Infinity, -Infinity]);
    const t = Tensor.from(data, [2, 4]);
    expect(t.shape).toEqual([2, 4]);
    expect(t.dtype).toBe('f32');
    expect(Array.from(t.toArray())).toEqual(Array.from(data));
  });

  test('i32 and u8 keep their integers and types', () => {
    const i = Tensor.from(Int32Array.from([-2147483648, -1, 0, 2147483647]), [4]);
    expect(Object.prototype.toString.call(i.toArray())).toBe('[object Int32Array]');
    expect(Array.from(i.toArray())).toEqual([-2147483648, -1, 0, 2147483647]);
    const u = Tensor.from([0, 7, 255], [3], { dtype: 'u8' });
    expect(Object.prototype.toString.call(u.toArray())).toBe('[object Uint8Array]');
    expect(Array.from(u.toArray())).toEqual([0, 7, 255]);
  });

  test('f16: every one of the 65536 codes decodes as IEEE binary16 and re-encodes to itself', () => {
    const decoded = Tensor.from(allCodes16, [65536], { dtype: 'f16' }).toArray();
    const reencoded = Tensor.from(decoded as Float32Array, [65536], { dtype: 'f16' }).view();
    for (let code = 0; code < 65536; code++) {
      const want = decodeHalfReference(code);
      if (Number.isNaN(want)) {
        expect(Number.isNaN(decoded[code])).toBe(true);
        continue;
      }
      if (decoded[code] !== want) throw new Error(`f16 code ${code}: ${decoded[code]} != ${want}`);
      if (reencoded[code] !== code) throw new Error(`f16 code ${code} re-encoded as ${reencoded[code]}`);
    }
  });

  test('bf16: every code decodes to its f32 high half and re-encodes to itself', () => {
    const decoded = Tensor.from(allCodes16, [65536], { dtype: 'bf16' }).toArray() as Float32Array;
    const bits = new Uint32Array(decoded.buffer);
    const reencoded = Tensor.from(decoded, [65536], { dtype: 'bf16' }).view();
    for (let code = 0; code < 65536; code++) {
      if (Number.isNaN(decoded[code])) continue;
      if (bits[code] !== code << 16 >>> 0) throw new Error(`bf16 code ${code} decoded to bits ${bits[code].toString(16)}`);
      if (reencoded[code] !== code) throw new Error(`bf16 code ${code} re-encoded as ${reencoded[code]}`);
    }
  });

  test('f16 and bf16 round half to even and overflow as the formats define', () => {
    const f16 = Tensor.from([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65519, 65520, 2 ** -25, 2 ** -25 * 3], [7], { dtype: 'f16' }).view();
    expect(Array.from(f16)).toEqual([0x3c00, 0x3c02, 0x7bff, 0x7bff, 0x7c00, 0x0000, 0x0002]);
    const bf16 = Tensor.from([1 + 2 ** -8, 1 + 3 * 2 ** -8, -2, NaN], [4], { dtype: 'bf16' }).view();
    expect(Array.from(bf16.slice(0, 3))).toEqual([0x3f80, 0x3f82, 0xc000]);
    expect(bf16[3] & 0x7fc0).toBe(0x7fc0);
  });

  for (const format of ['e4m3', 'e5m2'] as const) {
    test(`${format}: decode table equals fp8.safetensors ${format}.decode for all 256 codes (F1)`, () => {
      const golden = loadGolden('fp8');
      const want = golden.tensors[`${format}.decode`].toArray();
      const got = Tensor.from(allCodes8, [256], { dtype: format }).toArray();
      for (let code = 0; code < 256; code++) {
        if (Number.isNaN(want[code])) expect(Number.isNaN(got[code])).toBe(true);
        else expect(got[code]).toBe(want[code]);
      }
    });

    test(`${format}: saturating RNE encode equals fp8.safetensors ${format}.encode.codes (F1)`, () => {
      const golden = loadGolden('fp8');
      const input = golden.tensors[`${format}.encode.input`].toArray() as Float32Array;
      const want = golden.tensors[`${format}.encode.codes`].toArray();
      const got = Tensor.from(input, [input.length], { dtype: format }).view();
      let mismatches = 0;
      for (let i = 0; i < input.length; i++) if (got[i] !== want[i]) mismatches++;
      expect(mismatches).toBe(0);
      expect(input.length).toBeGreaterThan(10000);
    });
  }

  test('to(dtype) converts through f32: f32 → bf16 → f32 keeps the bf16-rounded value', () => {
    const t = Tensor.from([1.00390625, -7.5, 300], [3]);
    const back = t.to('bf16').to('f32');
    expect(back.dtype).toBe('f32');
    expect(Array.from(back.toArray())).toEqual([1, -7.5, 300]);
    expect(Array.from(t.to('e4m3').toArray())).toEqual([1, -7.5, 288]);
    expect(Array.from(Tensor.from([1.7, -3.2, 300], [3]).to('i32').toArray())).toEqual([1, -3, 300]);
  });

  test('scalar and empty shapes hold 1 and 0 elements', () => {
    const scalar = Tensor.from([4.5], []);
    expect(scalar.shape).toEqual([]);
    expect(Array.from(scalar.toArray())).toEqual([4.5]);
    const empty = Tensor.zeros([3, 0, 2]);
    expect(empty.numel).toBe(0);
    expect(empty.toArray().length).toBe(0);
    expect(empty.view().length).toBe(0);
  });
});

/**
 * Issue #16: Tensor.from copies data out of a typed array over a SharedArrayBuffer like any other
 * (it used to throw an untyped "Invalid argument"; DESIGN §4 wants typed errors or none).
 */
describe('Tensor.from on SharedArrayBuffer-backed data (DESIGN §4)', () => {
  const kinds = {
    Float32Array: (buffer: ArrayBufferLike, offset: number, n: number) => new Float32Array(buffer, offset * 4, n),
    Int32Array: (buffer: ArrayBufferLike, offset: number, n: number) => new Int32Array(buffer, offset * 4, n),
    Uint16Array: (buffer: ArrayBufferLike, offset: number, n: number) => new Uint16Array(buffer, offset * 2, n),
    Uint8Array: (buffer: ArrayBufferLike, offset: number, n: number) => new Uint8Array(buffer, offset, n),
  };
  /** `values` in a typed array of `kind`: over a SharedArrayBuffer, 3 elements in, or over an ArrayBuffer of its own. */
  function typed(kind: keyof typeof kinds, values: number[], share: boolean) {
    const bytes = (values.length + 5) * 4;
    const array = kinds[kind](share ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes), share ? 3 : 0, values.length);
    array.set(values);
    return array;
  }
  const cases: [keyof typeof kinds, DType, number[]][] = [
    ['Float32Array', 'f32', [1.5, -0, 2 ** 40, -Infinity, 2 ** -140]],
    ['Float32Array', 'bf16', [1, -2.5, 0.15625, 65280]],
    ['Float32Array', 'e4m3', [0.5, -448, 1.125]],
    ['Int32Array', 'i32', [-2147483648, 7, 2147483647]],
    ['Uint16Array', 'f16', [0x3c00, 0xc100, 0x7c00]],
    ['Uint8Array', 'u8', [0, 9, 255]],
    ['Uint8Array', 'e5m2', [0x3c, 0xc0]],
  ];

  test.each(cases)('%s over a SharedArrayBuffer as %s: the tensor equals one made from unshared data, values and bits', (kind, dtype, values) => {
    const data = typed(kind, values, true);
    expect(Object.prototype.toString.call(data.buffer)).toBe('[object SharedArrayBuffer]');
    const t = Tensor.from(data, [values.length], { dtype });
    const reference = Tensor.from(typed(kind, values, false), [values.length], { dtype });
    expect(Array.from(t.view())).toEqual(Array.from(reference.view()));
    expect(Array.from(t.toArray())).toEqual(Array.from(reference.toArray()));
    if (dtype === 'f32' || dtype === 'i32' || dtype === 'u8') expect(Array.from(t.toArray())).toEqual(values);
    data.fill(0);  // a copy: later writes to the shared memory do not reach the tensor
    expect(Array.from(t.view())).toEqual(Array.from(reference.view()));
  });
});

describe('zero-copy views', () => {
  test('a write through view() is seen by native code (toArray, to)', () => {
    const t = Tensor.zeros([2, 3]);
    const view = t.view() as Float32Array;
    view[4] = 42.5;
    expect(t.toArray()[4]).toBe(42.5);
    expect(t.to('bf16').toArray()[4]).toBe(42.5);
  });

  test('a native fill is seen through an existing view', () => {
    const t = Tensor.randn([8], { seed: 3 });
    expect(Array.from(t.view())).toEqual(Array.from(t.toArray()));
  });

  test('views of bf16/fp8 tensors are raw bits', () => {
    expect(Object.prototype.toString.call(Tensor.from([1], [1], { dtype: 'bf16' }).view())).toBe('[object Uint16Array]');
    expect(Array.from(Tensor.from([1], [1], { dtype: 'e4m3' }).view())).toEqual([0x38]);
  });

  test('storage is 64-byte aligned', () => {
    for (const n of [1, 3, 17, 1000]) {
      const view = Tensor.zeros([n], { dtype: 'u8' }).view();
      expect(view.byteLength).toBe(n);
    }
    // the native allocation is aligned; a Float32Array over it is always constructible
    expect(() => new Float64Array(Tensor.zeros([2]).view().buffer)).not.toThrow();
  });
});

describe('dispose()', () => {
  test('frees the storage at once, empties views and makes later use throw DisposedError', () => {
    const before = liveBytes();
    const t = Tensor.zeros([1024]);
    expect(liveBytes() - before).toBe(4096);
    const view = t.view();
    t.dispose();
    expect(liveBytes()).toBe(before);
    expect(view.length).toBe(0);
    expect(t.disposed).toBe(true);
    expect(() => t.toArray()).toThrow(DisposedError);
    expect(() => t.view()).toThrow(DisposedError);
    expect(() => t.to('bf16')).toThrow(DisposedError);
    expect(() => t.dispose()).not.toThrow();
    expect(liveBytes()).toBe(before);
  });

  test('a disposed empty tensor also refuses use', () => {
    const t = Tensor.zeros([0]);
    t.dispose();
    expect(() => t.toArray()).toThrow(DisposedError);
  });
});

describe('Tensor.randn (Philox-4x32-10)', () => {
  test('is reproducible across processes for the same seed', () => {
    const root = path.join(__dirname, '..');
    const script =
      `const addon = require('node-gyp-build')(${JSON.stringify(root)});` +
      `const view = new Uint8Array(addon.NativeTensor.randn([1001], 123456789012, 0.5, 0).view());` +
      `process.stdout.write(Buffer.from(view).toString('base64'))`;
    const here = Buffer.from((Tensor.randn([1001], { seed: 123456789012, std: 0.5 }).view() as Float32Array).buffer).toString('base64');
    const there = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', cwd: root });
    expect(there).toBe(here);
  });

  test('different seeds differ; moments match N(0, std²)', () => {
    const a = Tensor.randn([200000], { seed: 1 }).toArray();
    const b = Tensor.randn([200000], { seed: 2 }).toArray();
    expect(a[0]).not.toBe(b[0]);
    let sum = 0;
    let sq = 0;
    for (const v of a) {
      sum += v;
      sq += v * v;
    }
    const mean = sum / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(sq / a.length - mean * mean - 1)).toBeLessThan(0.02);
  });

  test('std scales and the dtype encodes', () => {
    const f = Tensor.randn([64], { seed: 9, std: 0.25 }).toArray();
    const unit = Tensor.randn([64], { seed: 9 }).toArray();
    for (let i = 0; i < 64; i++) expect(f[i]).toBeCloseTo(unit[i] * 0.25, 6);
    const bf = Tensor.randn([64], { seed: 9, dtype: 'bf16' as DType }).toArray();
    const rounded = Tensor.from(unit as Float32Array, [64]).to('bf16').toArray();
    expect(Array.from(bf)).toEqual(Array.from(rounded));
  });
});
