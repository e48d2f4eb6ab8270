/**
 * FP8 on the CPU (DESIGN F1–F3): the codecs, ops.quantizeFp8 (1×128 and 128×128 block scaling)
 * and ops.groupedGemmFp8 (the block-scaled grouped GEMM reference) against the PyTorch golden
 * test/fixtures/golden/fp8.safetensors — codes and scales exactly, the GEMM within 1e-5 — and
 * against float64 JavaScript references of F2/F3 on shapes the golden lacks (partial blocks,
 * empty and unequal groups, e5m2), plus the edge blocks and the typed errors of §4.
 */
import { ArgumentError, DisposedError, DTypeError, ShapeError, Tensor } from '../lib';
import { native } from '../lib/native';
import { Fp8Quantized, ops } from '../lib/ops';
import { expectTypedError, ErrorCase } from './helpers/expect-error';
import { loadGolden, relativeError } from './helpers/golden';
import { prng } from './helpers/random';

type Format = 'e4m3' | 'e5m2';

const golden = loadGolden('fp8').tensors;
const FMAX: Record<Format, number> = { e4m3: 448, e5m2: 57344 };
const allCodes = Uint8Array.from({ length: 256 }, (_, i) => i);

/** F1 decode written from the formats' definitions (bias 7 / 15), independent of native code. */
function decodeReference(code: number, format: Format): number {
  const [m, bias] = format === 'e4m3' ? [3, 7] : [2, 15];
  const sign = code & 0x80 ? -1 : 1;
  const e = (code & 0x7f) >> m;
  const mantissa = code & ((1 << m) - 1);
  if (format === 'e4m3' && e === 15 && mantissa === 7) return NaN;
  if (format === 'e5m2' && e === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (e === 0 ? mantissa * 2 ** (1 - bias - m) : (1 + mantissa / 2 ** m) * 2 ** (e - bias));
}

const decodeTables: Record<Format, Float64Array> = {
  e4m3: Float64Array.from(allCodes, (c) => decodeReference(c, 'e4m3')),
  e5m2: Float64Array.from(allCodes, (c) => decodeReference(c, 'e5m2')),
};

/** Codes of f32 values: Tensor.from encodes with the F1 encoder pinned by the golden below. */
const encode = (values: Float32Array, format: Format) => Tensor.from(values, [values.length], { dtype: format }).view() as Uint8Array;

/**
 * F2 in JavaScript over x [G,R,C] with blockRows × 128 blocks (partial at the ends): amax/fmax
 * and x/scale are f32 divisions (a float64 quotient of two f32 values rounded once to f32 is the
 * f32 quotient), scale 1 when the quotient is 0.
 */
function quantizeReference(x: Float32Array, shape: number[], blockRows: number, format: Format) {
  const [G, R, C] = shape.length === 3 ? shape : [1, ...shape];
  const rb = Math.ceil(R / blockRows), cb = Math.ceil(C / 128);
  const scales = new Float32Array(G * rb * cb);
  const quotients = new Float32Array(x.length);
  for (let g = 0; g < G; g++)
    for (let i = 0; i < rb; i++)
      for (let j = 0; j < cb; j++) {
        const at = (r: number, c: number) => (g * R + r) * C + c;
        const rows = [i * blockRows, Math.min(R, (i + 1) * blockRows)], cols = [j * 128, Math.min(C, (j + 1) * 128)];
        let amax = 0;
        for (let r = rows[0]; r < rows[1]; r++)
          for (let c = cols[0]; c < cols[1]; c++) {
            const v = Math.abs(x[at(r, c)]);
            if (v > amax || Number.isNaN(v)) amax = v; // NaN stays: nothing compares greater
          }
        const quotient = Math.fround(amax / FMAX[format]);
        const scale = quotient === 0 ? 1 : quotient;
        scales[(g * rb + i) * cb + j] = scale;
        for (let r = rows[0]; r < rows[1]; r++) for (let c = cols[0]; c < cols[1]; c++) quotients[at(r, c)] = x[at(r, c)] / scale;
      }
  return { codes: encode(quotients, format), scales };
}

/**
 * F3 in float64 in the order fp8.h states: per output, per K block ascending, the block's Σ of
 * decoded code products, times sa·sb, added to the accumulator; rounded to f32 at the end.
 */
function gemmReference(a: Fp8Quantized, b: Fp8Quantized, groupSizes: number[]): Float32Array {
  const [M, K] = a.q.shape, [, N] = b.q.shape;
  const kb = Math.ceil(K / 128), nb = Math.ceil(N / 128);
  const da = decodeTables[a.q.dtype as Format], db = decodeTables[b.q.dtype as Format];
  const aq = a.q.view() as Uint8Array, bq = b.q.view() as Uint8Array;
  const sa = a.scales.toArray(), sb = b.scales.toArray();
  const out = new Float32Array(M * N);
  let row = 0;
  groupSizes.forEach((rows, g) => {
    for (let r = row; r < row + rows; r++)
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let blk = 0; blk < kb; blk++) {
          let sum = 0;
          for (let k = blk * 128; k < Math.min(K, blk * 128 + 128); k++) sum += da[aq[r * K + k]] * db[bq[(g * N + n) * K + k]];
          acc += sum * (sa[r * kb + blk] * sb[(g * nb + Math.floor(n / 128)) * kb + blk]);
        }
        out[r * N + n] = acc;
      }
    row += rows;
  });
  return out;
}

const randomValues = (seed: number, n: number, scale = 1) => {
  const rand = prng(seed);
  return Float32Array.from({ length: n }, () => (2 * rand() - 1) * scale * 2 ** Math.floor(rand() * 8 - 4));
};
const bytes = (t: Tensor) => Array.from(t.view() as Uint8Array);
const sameBits = (got: ArrayLike<number>, want: ArrayLike<number>) => {
  expect(got.length).toBe(want.length);
  const bad = Array.from(got).findIndex((v, i) => !Object.is(v, want[i]));
  expect(bad === -1 ? 'all equal' : `index ${bad}: got ${got[bad]}, want ${want[bad]}`).toBe('all equal');
};

// ---- F1 codecs -------------------------------------------------------------------------------------

describe('FP8 codecs (F1)', () => {
  for (const format of ['e4m3', 'e5m2'] as const) {
    test(`${format}: all 256 codes decode to fp8.safetensors ${format}.decode and to the format's definition (NaN codes included)`, () => {
      const decoded = Tensor.from(allCodes, [256], { dtype: format }).toArray();
      sameBits(decoded, golden[`${format}.decode`].toArray());
      sameBits(decoded, Float32Array.from(decodeTables[format]));
      const nanCodes = allCodes.filter((c) => Number.isNaN(decoded[c]));
      expect(Array.from(nanCodes)).toEqual(format === 'e4m3' ? [0x7f, 0xff] : [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]);
    });

    test(`${format}: saturating RNE encode gives fp8.safetensors ${format}.encode.codes for all 16025 inputs`, () => {
      const input = golden[`${format}.encode.input`].toArray() as Float32Array;
      expect(Array.from(encode(input, format))).toEqual(bytes(golden[`${format}.encode.codes`]));
    });
  }
});

// ---- F2 block quantisation -----------------------------------------------------------------------

describe('ops.quantizeFp8 (F2)', () => {
  test('activations in 1×128 blocks: codes and scales equal fp8.safetensors gemm.a exactly', () => {
    const { q, scales } = ops.quantizeFp8(golden['gemm.a'], { block: [1, 128] });
    expect(q.dtype).toBe('e4m3');
    expect(q.shape).toEqual([381, 384]);
    expect(scales.shape).toEqual([381, 3]);
    expect(bytes(q)).toEqual(bytes(golden['gemm.a.codes']));
    sameBits(scales.toArray(), golden['gemm.a.scales'].toArray());
  });

  test('weights in 128×128 blocks per expert: codes and scales equal fp8.safetensors gemm.b exactly', () => {
    const { q, scales } = ops.quantizeFp8(golden['gemm.b'], { format: 'e4m3', block: [128, 128] });
    expect(q.shape).toEqual([5, 256, 384]);
    expect(scales.shape).toEqual([5, 2, 3]);
    expect(bytes(q)).toEqual(bytes(golden['gemm.b.codes']));
    sameBits(scales.toArray(), golden['gemm.b.scales'].toArray());
  });

  test('partial last blocks (K = 200, N = 130) cover the elements that exist, as the F2 reference', () => {
    const cases: [number[], [1, 128] | [128, 128]][] = [[[7, 200], [1, 128]], [[3, 130, 200], [128, 128]], [[130, 129], [128, 128]]];
    cases.forEach(([shape, block], i) => {
      const x = randomValues(100 + i, shape.reduce((p, d) => p * d, 1));
      const got = ops.quantizeFp8(Tensor.from(x, shape), { block });
      const want = quantizeReference(x, shape, block[0], 'e4m3');
      const grid = [Math.ceil(shape[shape.length - 2] / block[0]), Math.ceil(shape[shape.length - 1] / 128)];
      expect(got.scales.shape).toEqual(shape.length === 3 ? [shape[0], ...grid] : grid);
      sameBits(got.scales.toArray(), want.scales);
      expect(bytes(got.q)).toEqual(Array.from(want.codes));
    });
  });

  test("e5m2 scales by the format's own max: amax/57344, codes as the F2 reference, q of dtype e5m2", () => {
    const x = randomValues(5, 4 * 300, 1000);
    const got = ops.quantizeFp8(Tensor.from(x, [4, 300]), { format: 'e5m2', block: [1, 128] });
    const want = quantizeReference(x, [4, 300], 1, 'e5m2');
    expect(got.q.dtype).toBe('e5m2');
    sameBits(got.scales.toArray(), want.scales);
    expect(bytes(got.q)).toEqual(Array.from(want.codes));
    expect(Math.max(...Array.from(got.q.toArray(), Math.abs))).toBe(57344);
  });

  test('a block whose amax is 0 gets scale 1 and codes ±0; a subnormal amax whose amax/448 underflows also gets scale 1', () => {
    const x = new Float32Array(3 * 128);
    x[5] = -0;
    x[128] = 1e-45; // amax/448 rounds to 0 in f32: scale 1, so the block divides by 1, not by 0
    x[300] = 2;
    const { q, scales } = ops.quantizeFp8(Tensor.from(x, [1, 384]), { block: [1, 128] });
    expect(Array.from(scales.toArray())).toEqual([1, 1, 2 / 448].map(Math.fround));
    const codes = bytes(q);
    expect(codes.slice(0, 128).every((c, i) => c === (i === 5 ? 0x80 : 0))).toBe(true);
    expect(codes.slice(128, 256).every((c) => c === 0)).toBe(true);
    expect(codes[300]).toBe(0x7e);
  });

  test('x / scale past 448 (amax/448 rounded down) saturates to 0x7E / 0xFE instead of becoming NaN', () => {
    // Find f32 magnitudes whose quotient by their own scale exceeds 448.
    const over: number[] = [];
    for (let v = Math.fround(1.1); over.length < 4; v = Math.fround(v * 1.0001)) {
      if (Math.fround(v / Math.fround(v / 448)) > 448) over.push(v);
    }
    for (const [i, v] of over.entries()) {
      const x = Float32Array.from({ length: 128 }, (_, j) => (j === 7 ? (i % 2 ? -v : v) : 0.5));
      const { q } = ops.quantizeFp8(Tensor.from(x, [1, 128]), { block: [1, 128] });
      expect(bytes(q)[7]).toBe(i % 2 ? 0xfe : 0x7e);
    }
  });

  test('a NaN makes its block NaN (scale NaN, every code 0x7F); an Inf makes finite codes ±0 and itself NaN; other blocks are untouched', () => {
    const x = Float32Array.from({ length: 3 * 128 }, (_, i) => (i % 3) - 1);
    x[10] = NaN;
    x[200] = -Infinity;
    const { q, scales } = ops.quantizeFp8(Tensor.from(x, [1, 384]), { block: [1, 128] });
    const s = scales.toArray();
    expect(Number.isNaN(s[0])).toBe(true);
    expect(s[1]).toBe(Infinity);
    expect(s[2]).toBe(Math.fround(1 / 448));
    const codes = bytes(q);
    expect(codes.slice(0, 128).every((c) => c === 0x7f)).toBe(true);
    expect(codes.slice(128, 256).every((c, i) => (i === 72 ? c === 0x7f : c === 0 || c === 0x80))).toBe(true);
    expect(Array.from(q.toArray().slice(256, 259))).toEqual([0, 448, -448]); // x = 0, 1, -1 at scale 1/448
  });
});

// ---- F3 grouped GEMM -----------------------------------------------------------------------------

describe('ops.groupedGemmFp8 (F3)', () => {
  const goldenA = (): Fp8Quantized => ({
    q: Tensor.from(golden['gemm.a.codes'].view() as Uint8Array, [381, 384], { dtype: 'e4m3' }),
    scales: golden['gemm.a.scales'],
  });
  const goldenB = (): Fp8Quantized => ({
    q: Tensor.from(golden['gemm.b.codes'].view() as Uint8Array, [5, 256, 384], { dtype: 'e4m3' }),
    scales: golden['gemm.b.scales'],
  });
  const goldenSizes = () => Array.from(golden['gemm.groupSizes'].toArray());

  // The golden is float64 PyTorch; ours accumulates in float64 too (exact per block) and rounds to
  // f32 once, so the error is f32 output rounding (~3e-8). 1e-5 is the bound; a wrong scale
  // index or a missed block is off by > 1e-2.
  test('the golden codes and scales give fp8.safetensors gemm.out within 1e-5 relative (groups 0, 37, 128, 5, 211)', () => {
    const out = ops.groupedGemmFp8(goldenA(), goldenB(), goldenSizes());
    expect(out.shape).toEqual([381, 256]);
    expect(relativeError(out.toArray(), golden['gemm.out'].toArray())).toBeLessThan(1e-5);
  });

  test('quantizeFp8 then groupedGemmFp8 from the golden f32 inputs gives gemm.out within 1e-5 relative', () => {
    const a = ops.quantizeFp8(golden['gemm.a'], { block: [1, 128] });
    const b = ops.quantizeFp8(golden['gemm.b'], { block: [128, 128] });
    const out = ops.groupedGemmFp8(a, b, goldenSizes());
    expect(relativeError(out.toArray(), golden['gemm.out'].toArray())).toBeLessThan(1e-5);
  });

  // e4m3 × e4m3 block sums are exact in float64 (fp8.h) and the JS reference adds in the same
  // order, so the results are equal bit for bit, whatever the thread split.
  test('empty, unequal and single-row groups with partial K and N blocks equal the float64 reference bit for bit (e4m3)', () => {
    const sizeSets = [[0, 3, 0, 70, 1], [40, 0, 0, 0, 0], [0, 0, 0, 0, 33], [1, 1, 1, 1, 1]];
    for (const [c, sizes] of sizeSets.entries()) {
      const M = sizes.reduce((p, s) => p + s, 0), N = 130, K = 200;
      const a = ops.quantizeFp8(Tensor.from(randomValues(20 + c, M * K), [M, K]), { block: [1, 128] });
      const b = ops.quantizeFp8(Tensor.from(randomValues(30 + c, 5 * N * K, 3), [5, N, K]), { block: [128, 128] });
      sameBits(ops.groupedGemmFp8(a, b, sizes).toArray(), gemmReference(a, b, sizes));
    }
  });

  test('M = 0 (every group empty) gives an empty [0, N] output', () => {
    const a = ops.quantizeFp8(Tensor.from(new Float32Array(0), [0, 64]), { block: [1, 128] });
    const b = ops.quantizeFp8(Tensor.from(randomValues(3, 2 * 8 * 64), [2, 8, 64]), { block: [128, 128] });
    const out = ops.groupedGemmFp8(a, b, [0, 0]);
    expect(out.shape).toEqual([0, 8]);
  });

  // e5m2 products span more bits than float64 holds exactly, so the block sums round: an FMA (some
  // compilers contract a·b + c off x86) may change the last float64 bit, never the f32 result by
  // more than one rounding. 1e-12 relative is far above that and far below a wrong result.
  test('e5m2 and mixed e4m3 × e5m2 operands equal the float64 reference within 1e-12 relative', () => {
    const sizes = [5, 0, 60];
    const x = Tensor.from(randomValues(41, 65 * 256, 100), [65, 256]);
    const w = Tensor.from(randomValues(42, 3 * 64 * 256, 100), [3, 64, 256]);
    for (const [fa, fb] of [['e5m2', 'e5m2'], ['e4m3', 'e5m2'], ['e5m2', 'e4m3']] as const) {
      const a = ops.quantizeFp8(x, { format: fa, block: [1, 128] });
      const b = ops.quantizeFp8(w, { format: fb, block: [128, 128] });
      expect(relativeError(ops.groupedGemmFp8(a, b, sizes).toArray(), gemmReference(a, b, sizes))).toBeLessThan(1e-12);
    }
  });

  test('the dequantised product approximates the f32 product of the inputs (e4m3 keeps ~2^-4 relative per element)', () => {
    const M = 16, N = 32, K = 256;
    const x = randomValues(50, M * K), w = randomValues(51, N * K);
    const exact = ops.groupedGemm(Tensor.from(x, [M, K]), Tensor.from(w, [1, N, K]), [M]).output.toArray();
    const a = ops.quantizeFp8(Tensor.from(x, [M, K]), { block: [1, 128] });
    const b = ops.quantizeFp8(Tensor.from(w, [1, N, K]), { block: [128, 128] });
    // Each operand is off by ≤ 2^-4 relative per element (3 mantissa bits, RNE), the errors are
    // independent across K, so the sum is off by a few percent: 0.1 catches a wrong scale or layout.
    expect(relativeError(ops.groupedGemmFp8(a, b, [M]).toArray(), exact)).toBeLessThan(0.1);
  });
});

// ---- errors (§4) -----------------------------------------------------------------------------------

describe('FP8 misuse throws typed errors naming the argument (§4)', () => {
  const x = Tensor.from(randomValues(60, 4 * 256), [4, 256]);
  const a = ops.quantizeFp8(x, { block: [1, 128] });
  const b = ops.quantizeFp8(Tensor.from(randomValues(61, 2 * 8 * 256), [2, 8, 256]), { block: [128, 128] });
  const disposed = Tensor.from(new Float32Array(4), [2, 2]);
  disposed.dispose();
  const asAny = (v: unknown) => v as never;

  const facade: ErrorCase[] = [
    ['x not a tensor', () => ops.quantizeFp8(asAny([1, 2]), { block: [1, 128] }), ArgumentError, /^x must be a f32 Tensor/],
    ['x i32', () => ops.quantizeFp8(Tensor.from(Int32Array.from([1, 2]), [1, 2]), { block: [1, 128] }), DTypeError, /^x must be a f32 tensor, got i32/],
    ['x of rank 1', () => ops.quantizeFp8(Tensor.from(new Float32Array(4), [4]), { block: [1, 128] }), ShapeError, /^x must have 2 dimensions \[M,K\] or 3/],
    ['x disposed', () => ops.quantizeFp8(disposed, { block: [1, 128] }), DisposedError, /^x has been disposed/],
    ['opts missing', () => ops.quantizeFp8(x, asAny(undefined)), ArgumentError, /^opts must be an object/],
    ['block [64, 128]', () => ops.quantizeFp8(x, { block: asAny([64, 128]) }), ArgumentError, /^opts\.block must be \[1, 128\] or \[128, 128\], got \[64, 128\]/],
    ['block missing', () => ops.quantizeFp8(x, asAny({})), ArgumentError, /^opts\.block must be .* got undefined/],
    ['format e3m4', () => ops.quantizeFp8(x, { format: asAny('e3m4'), block: [1, 128] }), ArgumentError, /^opts\.format must be 'e4m3' or 'e5m2', got string "e3m4"/],
    ['unknown option', () => ops.quantizeFp8(x, asAny({ block: [1, 128], blocks: 2 })), ArgumentError, /^opts\.blocks is not an option/],
    ['a not an object', () => ops.groupedGemmFp8(asAny(3), b, [4, 0]), ArgumentError, /^a must be an object, got number 3/],
    ['a.q f32', () => ops.groupedGemmFp8({ q: x, scales: a.scales }, b, [4, 0]), DTypeError, /^a\.q must be an e4m3 or e5m2 tensor, got f32/],
    ['b.q of rank 2', () => ops.groupedGemmFp8(a, { q: a.q, scales: a.scales }, [4]), ShapeError, /^b\.q must have 3 dimensions/],
    ['b.scales missing', () => ops.groupedGemmFp8(a, asAny({ q: b.q }), [4, 0]), ArgumentError, /^b\.scales must be a f32 Tensor/],
    ['K mismatch', () => ops.groupedGemmFp8(ops.quantizeFp8(Tensor.from(new Float32Array(4 * 128), [4, 128]), { block: [1, 128] }), b, [4, 0]), ShapeError, /^b\.q has shape \[2, 8, 256\]: dimension 2 must equal K = a\.q\.shape\[1\] = 128/],
    ['a.scales of 128×128 blocks', () => ops.groupedGemmFp8({ q: a.q, scales: ops.quantizeFp8(x, { block: [128, 128] }).scales }, b, [4, 0]), ShapeError, /^a\.scales has shape \[1, 2\]: dimension 0 must equal M = a\.q\.shape\[0\] = 4/],
    ['b.scales of the wrong grid', () => ops.groupedGemmFp8(a, { q: b.q, scales: Tensor.from(new Float32Array(2 * 2 * 2), [2, 2, 2]) }, [4, 0]), ShapeError, /^b\.scales has shape \[2, 2, 2\]: dimension 1 must equal ceil\(N \/ 128\) = 1/],
    ['groupSizes sum', () => ops.groupedGemmFp8(a, b, [2, 1]), ShapeError, /^groupSizes must sum to M = a\.q\.shape\[0\] = 4, got 3/],
    ['groupSizes negative', () => ops.groupedGemmFp8(a, b, [5, -1]), ArgumentError, /^groupSizes\[1\] must be an integer in \[0,/],
    ['groupSizes length', () => ops.groupedGemmFp8(a, b, [4]), ShapeError, /^groupSizes must have 2 entries, got 1/],
  ];
  test.each(facade)('facade: %s', (_name, call, errorClass, message) => expectTypedError(call, errorClass, message));

  // The addon checks again: a caller can reach it without the facade.
  const nativeCases: ErrorCase[] = [
    ['argument count', () => (native.quantizeFp8 as (...args: unknown[]) => unknown)(x.handle, 'e4m3'), ArgumentError, /^quantizeFp8\(x, format, blockRows, device\) takes 4 arguments, got 2/],
    ['x i32', () => native.quantizeFp8(Tensor.from(Int32Array.from([1]), [1, 1]).handle, 'e4m3', 1, 'cpu'), DTypeError, /^x must be a f32 tensor, got i32/],
    ['x of rank 4', () => native.quantizeFp8(Tensor.from(new Float32Array(1), [1, 1, 1, 1]).handle, 'e4m3', 1, 'cpu'), ShapeError, /^x must have 2 dimensions \[M,K\] or 3 \[G,N,K\], got shape \[1, 1, 1, 1\]/],
    ['format', () => native.quantizeFp8(x.handle, asAny('fp8'), 1, 'cpu'), ArgumentError, /^format must be 'e4m3' or 'e5m2', got "fp8"/],
    ['blockRows 64', () => native.quantizeFp8(x.handle, 'e4m3', 64, 'cpu'), ArgumentError, /^blockRows must be 1 or 128, got number 64/],
    ['blockRows 1.5', () => native.quantizeFp8(x.handle, 'e4m3', 1.5, 'cpu'), ArgumentError, /^blockRows must be an integer in \[1, 128\]/],
    ['a.q u8', () => native.groupedGemmFp8(Tensor.from([1], [1, 1], { dtype: 'u8' }).handle, a.scales.handle, b.q.handle, b.scales.handle, [4, 0], 'cpu'), DTypeError, /^a\.q must be an e4m3 or e5m2 tensor, got u8/],
    ['a.scales rows', () => native.groupedGemmFp8(a.q.handle, b.scales.handle, b.q.handle, b.scales.handle, [4, 0], 'cpu'), ShapeError, /^a\.scales must have 2 dimensions/],
    ['b.scales K blocks', () => native.groupedGemmFp8(a.q.handle, a.scales.handle, b.q.handle, Tensor.from(new Float32Array(2), [2, 1, 1]).handle, [4, 0], 'cpu'), ShapeError, /^b\.scales has shape \[2, 1, 1\]: dimension 2 must equal ceil\(K \/ 128\) = 2/],
    ['groupSizes', () => native.groupedGemmFp8(a.q.handle, a.scales.handle, b.q.handle, b.scales.handle, [4, 1], 'cpu'), ShapeError, /^groupSizes must sum to M = a\.q\.shape\[0\] = 4, got 5/],
  ];
  test.each(nativeCases)('native: %s', (_name, call, errorClass, message) => expectTypedError(call, errorClass, message));
});
