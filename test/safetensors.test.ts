import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DTypeError, FormatError, loadSafetensors, parseSafetensors, saveSafetensors, serializeSafetensors, Tensor } from '../lib';
import { GOLDEN_DIR, goldenFiles } from './helpers/golden';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Builds a file from a header object and a data part, for the malformed-input cases. */
function fileWith(header: unknown, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

describe('safetensors on every golden file', () => {
  const files = goldenFiles();
  test('the fixtures are all there', () => expect(files.length).toBeGreaterThanOrEqual(13));

  test.each(files)('%s loads, and saving it again gives back the same tensors and metadata', (file) => {
    const original = fs.readFileSync(path.join(GOLDEN_DIR, file));
    const loaded = parseSafetensors(original, file);
    const names = Object.keys(loaded.tensors);
    expect(names.length).toBeGreaterThan(0);
    // every tensor's bytes equal the file's bytes at its data_offsets
    const headerLength = Number(original.readBigUInt64LE(0));
    const header = JSON.parse(original.subarray(8, 8 + headerLength).toString());
    for (const name of names) {
      const t = loaded.tensors[name];
      const [begin, end] = header[name].data_offsets as number[];
      const view = t.view();
      expect(Buffer.from(view.buffer, view.byteOffset, view.byteLength).equals(original.subarray(8 + headerLength + begin, 8 + headerLength + end))).toBe(true);
      expect(t.shape).toEqual(header[name].shape);
    }
    const out = path.join(tmp, file);
    saveSafetensors(out, loaded.tensors, loaded.metadata);
    const again = loadSafetensors(out);
    expect(again.metadata).toEqual(loaded.metadata);
    expect(Object.keys(again.tensors).sort()).toEqual(names.sort());
    for (const name of names) {
      expect(again.tensors[name].dtype).toBe(loaded.tensors[name].dtype);
      expect(Array.from(again.tensors[name].view())).toEqual(Array.from(loaded.tensors[name].view()));
    }
  });

  test('golden metadata carries the MoEConfig as JSON (DESIGN §6)', () => {
    const { metadata } = loadSafetensors(path.join(GOLDEN_DIR, 'softmax_top2.safetensors'));
    expect(JSON.parse(metadata.config).router.topK).toBe(2);
  });
});

describe('safetensors writing', () => {
  test('scalars, every dtype, metadata, and an 8-byte-aligned header', () => {
    const tensors = {
      scalar: Tensor.from([2.5], []),
      f16: Tensor.from([1, -2], [2], { dtype: 'f16' }),
      bf16: Tensor.from([3], [1], { dtype: 'bf16' }),
      i32: Tensor.from([-7, 8, 9], [3], { dtype: 'i32' }),
      u8: Tensor.from([1, 2], [1, 2], { dtype: 'u8' }),
      e4m3: Tensor.from([0.5], [1], { dtype: 'e4m3' }),
      e5m2: Tensor.from([-4], [1], { dtype: 'e5m2' }),
      empty: Tensor.zeros([0, 4]),
    };
    const bytes = serializeSafetensors(tensors, { note: 'hello' });
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString());
    expect(header.scalar).toEqual({ dtype: 'F32', shape: [], data_offsets: expect.any(Array) });
    expect(header.e4m3.dtype).toBe('F8_E4M3');
    const back = parseSafetensors(bytes);
    expect(back.metadata).toEqual({ note: 'hello' });
    expect(back.tensors.scalar.shape).toEqual([]);
    expect(Array.from(back.tensors.scalar.toArray())).toEqual([2.5]);
    expect(Array.from(back.tensors.f16.toArray())).toEqual([1, -2]);
    expect(Array.from(back.tensors.i32.toArray())).toEqual([-7, 8, 9]);
    expect(Array.from(back.tensors.e5m2.toArray())).toEqual([-4]);
    expect(back.tensors.empty.shape).toEqual([0, 4]);
  });

  test('rejects non-string metadata and non-tensors', () => {
    expect(() => serializeSafetensors({ a: Tensor.zeros([1]) }, { n: 1 as never })).toThrow(FormatError);
    expect(() => serializeSafetensors({ a: [1] as never })).toThrow(/tensors\["a"\] must be a Tensor/);
  });
});

describe('malformed and truncated files throw FormatError (or DTypeError for foreign dtypes)', () => {
  const good = serializeSafetensors({ a: Tensor.from([1, 2, 3, 4], [2, 2]), b: Tensor.from([5], [1], { dtype: 'i32' }) });
  const f32 = (n: number) => new Uint8Array(4 * n);
  const cases: [string, Buffer, RegExp, typeof FormatError | typeof DTypeError][] = [
    ['empty file', Buffer.alloc(0), /truncated: 0 bytes/, FormatError],
    ['5 bytes', Buffer.alloc(5), /truncated/, FormatError],
    ['header length beyond the file', fileWith({}, undefined, 1000n), /header length 1000 exceeds/, FormatError],
    ['header length near 2^64', fileWith({}, undefined, 2n ** 63n), /exceeds/, FormatError],
    ['invalid JSON', fileWith('{"a": '), /not valid JSON/, FormatError],
    ['JSON array header', fileWith([1, 2]), /must be a JSON object/, FormatError],
    ['metadata not strings', fileWith({ __metadata__: { k: 1 } }), /__metadata__\["k"\] must be a string/, FormatError],
    ['unknown dtype', fileWith({ a: { dtype: 'Q7', shape: [1], data_offsets: [0, 4] } }, f32(1)), /unknown dtype "Q7"/, FormatError],
    ['prototype-named dtype', fileWith({ a: { dtype: 'constructor', shape: [1], data_offsets: [0, 4] } }, f32(1)), /unknown dtype/, FormatError],
    ['F64 tensor', fileWith({ a: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, f32(2)), /dtype F64; moekit reads/, DTypeError],
    ['negative shape', fileWith({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32(1)), /shape must be/, FormatError],
    ['size mismatch', fileWith({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, f32(1)), /needs 8/, FormatError],
    ['offsets past the end', fileWith({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32(1)), /outside the 4 data bytes/, FormatError],
    ['reversed offsets', fileWith({ a: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, f32(1)), /outside/, FormatError],
    ['overlap', fileWith({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32(2)), /overlaps/, FormatError],
    ['hole', fileWith({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32(2)), /\[0, 4\) belong to no tensor/, FormatError],
    ['trailing bytes', fileWith({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(2)), /\[4, 8\) belong to no tensor/, FormatError],
    ['missing data_offsets', fileWith({ a: { dtype: 'F32', shape: [1] } }, f32(1)), /data_offsets must be/, FormatError],
    ['cut in the data', good.subarray(0, good.length - 3), /outside|belong to no tensor/, FormatError],
    ['cut in the header', good.subarray(0, 20), /truncated/, FormatError],
  ];

  test.each(cases)('%s', (_name, bytes, message, errorClass) => {
    expect(() => parseSafetensors(bytes)).toThrow(errorClass);
    expect(() => parseSafetensors(bytes)).toThrow(message);
  });

  test('every truncation of a valid file is rejected', () => {
    for (let cut = 0; cut < good.length; cut++) expect(() => parseSafetensors(good.subarray(0, cut))).toThrow(FormatError);
  });

  test('loadSafetensors names the missing path', () => {
    expect(() => loadSafetensors(path.join(tmp, 'nope.safetensors'))).toThrow(/ENOENT/);
    expect(() => loadSafetensors('' as string)).toThrow(FormatError);
  });
});

/**
 * Names come from outside (issue #16): a tensor or metadata key named like an Object.prototype
 * member must be an entry like any other, never a prototype, and nothing inherited may look like
 * one (DESIGN §4: a hostile file cannot change what the caller gets). Empty names are supported on
 * save and load alike (the format allows any string).
 */
describe('hostile names: __proto__, constructor, the empty string, 10 kB (DESIGN §4)', () => {
  const names = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', '', 'n'.repeat(10 * 1024)];

  test('tensors and metadata keys with these names round-trip through saveSafetensors and loadSafetensors', () => {
    const tensors: Record<string, Tensor> = Object.create(null);
    const metadata: Record<string, string> = Object.create(null);
    names.forEach((name, i) => {
      tensors[name] = Tensor.from([i, -i - 0.5], [2]);
      metadata[name] = `value ${i}`;
    });
    const file = path.join(tmp, 'hostile.safetensors');
    saveSafetensors(file, tensors, metadata);
    const back = loadSafetensors(file);
    expect(Object.keys(back.tensors).sort()).toEqual([...names].sort());
    for (const name of names) {
      expect(Object.hasOwn(back.tensors, name)).toBe(true);
      expect(Array.from(back.tensors[name].toArray())).toEqual(Array.from(tensors[name].toArray()));
    }
    expect(Object.entries(back.metadata).sort()).toEqual(Object.entries(metadata).sort());
  });

  test('an object literal\'s own "__proto__" key (computed) is a tensor name too', () => {
    const t = Tensor.from([4, 5], [2]);
    const back = parseSafetensors(serializeSafetensors({ ['__proto__']: t, a: t }));
    expect(Object.keys(back.tensors).sort()).toEqual(['__proto__', 'a']);
    expect(Array.from(back.tensors['__proto__'].toArray())).toEqual([4, 5]);
  });

  test('nothing inherited looks like a name: a file without them has no constructor, toString or __proto__ entry', () => {
    const { tensors, metadata } = parseSafetensors(serializeSafetensors({ a: Tensor.zeros([1]) }, { k: 'v' }));
    for (const record of [tensors, metadata] as Record<string, unknown>[]) {
      for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) expect(record[name]).toBeUndefined();
    }
  });

  test('an untrusted file built by hand (no checksum): __proto__, constructor and "" are own entries, and every tensor made is returned', () => {
    const entry = (begin: number) => `{"dtype":"F32","shape":[1],"data_offsets":[${begin},${begin + 4}]}`;
    const header = `{"__proto__":${entry(0)},"constructor":${entry(4)},"":${entry(8)},"__metadata__":{"__proto__":"meta","toString":"s"}}`;
    const bytes = fileWith(header, new Uint8Array(Float32Array.of(1.5, -2, 3).buffer));
    const from = jest.spyOn(Tensor, 'from');
    let loaded: ReturnType<typeof parseSafetensors>;
    let made: unknown[];
    try {
      loaded = parseSafetensors(bytes, 'untrusted');
    } finally {
      made = from.mock.results.map((r) => r.value);
      from.mockRestore();
    }
    const { tensors, metadata } = loaded;
    expect(Object.keys(tensors).sort()).toEqual(['', '__proto__', 'constructor']);
    expect([tensors['__proto__'], tensors['constructor'], tensors['']].map((t) => Array.from(t.toArray()))).toEqual([[1.5], [-2], [3]]);
    expect(Object.entries(metadata).sort()).toEqual([['__proto__', 'meta'], ['toString', 's']]);
    // the caller can dispose what the parser allocated: every tensor it made is among the returned ones
    const returned = Object.values(tensors);
    expect(made).toHaveLength(3);
    for (const t of made) expect(returned).toContain(t);
  });
});
