/**
 * safetensors reading and writing (the format of Hugging Face's `safetensors`):
 *   u64 little-endian N | N bytes of JSON header | data
 * The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets into
 * the data part) and may hold "__metadata__", a map of strings to strings. The data part must be
 * covered exactly: no overlaps, no holes.
 *
 * Integrity: moekit writes a SHA-256 of the tensor descriptions (name, dtype, shape, offsets), the
 * other metadata and the data part as metadata "moekit.sha256" and, reading a file that has one,
 * rejects a file that does not match (tampered or corrupted) before any tensor is made. The key is the library's own: it is not returned in `metadata` and may not
 * be passed in. Files from other writers (no key) are read as they are.
 *
 * Names come from outside (a file, a caller): every string is a valid tensor name or metadata key,
 * the empty string and `__proto__`, `constructor` or `toString` included (only "__metadata__" is
 * not a tensor name). Records keyed by them are null-prototype objects (Object.create(null)), so
 * no name reaches a prototype: `tensors` and `metadata` hold exactly the file's names, and nothing
 * inherited looks like one.
 *
 * Devices: a tensor on a cuda device is copied to the host to be written (the copy waits for it);
 * tensors read from a file are cpu tensors (`t.to('cuda:N')` moves one; a layer's or an
 * optimizer's loadStateDict copies them to its own device).
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import { DType, ELEMENT_SIZE } from './dtype';
import { ArgumentError, DTypeError, FormatError } from './errors';
import { Tensor } from './tensor';
import { checkObject, describe, numelOf } from './validate';

const FILE_DTYPE: Record<string, DType> = { F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', U8: 'u8', F8_E4M3: 'e4m3', F8_E5M2: 'e5m2' };
const OTHER_FILE_DTYPES = ['F64', 'I64', 'I16', 'I8', 'U16', 'U32', 'U64', 'BOOL', 'F8_E8M0', 'F4', 'C64'];
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const CHECKSUM_KEY = 'moekit.sha256';

/** What parseSafetensors returns: null-prototype records of the file's names (see the file comment). */
export interface Safetensors {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** Writes `tensors` (and string `metadata`) to `path`, atomically (temp file, then rename). */
export function saveSafetensors(path: string, tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): void {
  if (typeof path !== 'string' || path.length === 0) throw new FormatError(`path must be a non-empty string, got ${describe(path)}`);
  const bytes = serializeSafetensors(tensors, metadata);
  try {
    fs.writeFileSync(`${path}.tmp`, bytes);
    fs.renameSync(`${path}.tmp`, path);
  } catch (error) {
    fs.rmSync(`${path}.tmp`, { force: true });  // no half-written file left behind
    throw error;
  }
}

/** The bytes of a safetensors file holding `tensors` and `metadata`. */
export function serializeSafetensors(tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): Buffer {
  checkObject(tensors, 'tensors');
  const meta = checkObject(metadata, 'metadata');
  for (const [key, value] of Object.entries(meta)) {
    if (typeof value !== 'string') throw new FormatError(`metadata["${key}"] must be a string, got ${describe(value)}`);
  }
  if (Object.hasOwn(meta, CHECKSUM_KEY)) throw new FormatError(`metadata["${CHECKSUM_KEY}"] is reserved: moekit writes the data checksum there`);
  const header: Record<string, unknown> = Object.create(null);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of Object.keys(tensors).sort()) {
    const tensor = tensors[name];
    if (!Tensor.isTensor(tensor)) throw new FormatError(`tensors["${name}"] must be a Tensor, got ${describe(tensor)}`);
    if (name === '__metadata__') throw new FormatError('tensors may not be named "__metadata__"');
    const bytes = hostBytes(tensor);
    header[name] = { dtype: fileDType(tensor.dtype), shape: tensor.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  const entries = Object.entries(header).map(([name, e]) => {
    const { dtype, shape, data_offsets: [begin, end] } = e as { dtype: string; shape: number[]; data_offsets: number[] };
    return { name, dtype: FILE_DTYPE[dtype], shape, begin, end };
  });
  header.__metadata__ = { ...meta, [CHECKSUM_KEY]: checksumOf(entries, meta as Record<string, string>, chunks) };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([prefix, Buffer.from(json), ...chunks]);
}

/** Reads a safetensors file. Malformed or truncated files throw FormatError; no tensor is left allocated. */
export function loadSafetensors(path: string): Safetensors {
  if (typeof path !== 'string' || path.length === 0) throw new FormatError(`path must be a non-empty string, got ${describe(path)}`);
  return parseSafetensors(fs.readFileSync(path), path);
}

/** Parses the bytes of a safetensors file; `source` names it in error messages. */
export function parseSafetensors(bytes: Uint8Array, source = 'buffer'): Safetensors {
  if (!(bytes instanceof Uint8Array)) throw new ArgumentError(`bytes must be a Uint8Array (or Buffer), got ${describe(bytes)}`);
  if (typeof source !== 'string') throw new ArgumentError(`source must be a string, got ${describe(source)}`);
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < 8) throw new FormatError(`${source}: truncated: ${buffer.length} bytes, but a safetensors file starts with an 8-byte header length`);
  const headerLength = buffer.readBigUInt64LE(0);
  if (headerLength > BigInt(buffer.length - 8)) {
    throw new FormatError(`${source}: truncated: header length ${headerLength} exceeds the ${buffer.length - 8} bytes that follow`);
  }
  if (headerLength > BigInt(MAX_HEADER_BYTES)) throw new FormatError(`${source}: header length ${headerLength} exceeds ${MAX_HEADER_BYTES} bytes`);
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(buffer.subarray(8, dataStart).toString('utf8'));
  } catch (error) {
    throw new FormatError(`${source}: header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new FormatError(`${source}: header must be a JSON object`);
  const { __metadata__: rawMetadata, ...described } = header as Record<string, unknown>;
  const metadata = parseMetadata(rawMetadata, source);
  const dataLength = buffer.length - dataStart;
  const entries = Object.entries(described).map(([name, value]) => parseEntry(name, value, dataLength, source));
  checkCoverage(entries, dataLength, source);
  if (Object.hasOwn(metadata, CHECKSUM_KEY)) {
    const expected = metadata[CHECKSUM_KEY];
    delete metadata[CHECKSUM_KEY];
    if (checksumOf(entries, metadata, [buffer.subarray(dataStart)]) !== expected) {
      throw new FormatError(`${source}: the file does not match its checksum (${CHECKSUM_KEY}): it was modified or corrupted after it was written`);
    }
  }

  const tensors: Record<string, Tensor> = Object.create(null);
  try {
    for (const entry of entries) {
      const raw = new Uint8Array(buffer.buffer, buffer.byteOffset + dataStart + entry.begin, entry.end - entry.begin);
      tensors[entry.name] = tensorFromBytes(raw, entry);
    }
  } catch (error) {
    Object.values(tensors).forEach((t) => t.dispose());
    throw error;
  }
  return { tensors, metadata };
}

/** SHA-256 over the tensor descriptions (by name), the metadata (by key) and the data bytes. */
function checksumOf(entries: Entry[], metadata: Record<string, string>, data: Uint8Array[]): string {
  const described = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((e) => [e.name, e.dtype, e.shape, e.begin, e.end]);
  const meta = Object.keys(metadata).sort().map((k) => [k, metadata[k]]);
  const hash = createHash('sha256').update(JSON.stringify([described, meta]));
  for (const chunk of data) hash.update(chunk);
  return hash.digest('hex');
}

function parseMetadata(value: unknown, source: string): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FormatError(`${source}: __metadata__ must be an object of strings`);
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new FormatError(`${source}: __metadata__["${key}"] must be a string, got ${describe(v)}`);
  }
  return Object.assign(Object.create(null) as Record<string, string>, value);
}

function parseEntry(name: string, value: unknown, dataLength: number, source: string): Entry {
  const where = `${source}: tensor "${name}"`;
  if (typeof value !== 'object' || value === null) throw new FormatError(`${where} must be described by an object`);
  const { dtype: fileType, shape, data_offsets: offsets } = value as Record<string, unknown>;
  if (typeof fileType !== 'string') throw new FormatError(`${where}: dtype must be a string, got ${describe(fileType)}`);
  const dtype = Object.hasOwn(FILE_DTYPE, fileType) ? FILE_DTYPE[fileType] : undefined;
  if (dtype === undefined) {
    if (OTHER_FILE_DTYPES.includes(fileType)) {
      throw new DTypeError(`${where} has dtype ${fileType}; moekit reads ${Object.keys(FILE_DTYPE).join(', ')}`);
    }
    throw new FormatError(`${where}: unknown dtype "${fileType}"`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FormatError(`${where}: shape must be an array of non-negative integers, got ${describe(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new FormatError(`${where}: data_offsets must be [begin, end] of non-negative integers`);
  }
  const [begin, end] = offsets as number[];
  if (begin > end || end > dataLength) {
    throw new FormatError(`${where}: data_offsets [${begin}, ${end}] lie outside the ${dataLength} data bytes (truncated file?)`);
  }
  const expected = numelOf(shape) * ELEMENT_SIZE[dtype];
  if (end - begin !== expected) {
    throw new FormatError(`${where}: ${end - begin} data bytes, but shape [${shape.join(', ')}] of ${fileType} needs ${expected}`);
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

function checkCoverage(entries: Entry[], dataLength: number, source: string): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const entry of sorted) {
    if (entry.begin < cursor) throw new FormatError(`${source}: tensor "${entry.name}" overlaps the tensor before it`);
    if (entry.begin > cursor) throw new FormatError(`${source}: data bytes [${cursor}, ${entry.begin}) belong to no tensor`);
    cursor = entry.end;
  }
  if (cursor !== dataLength) throw new FormatError(`${source}: data bytes [${cursor}, ${dataLength}) belong to no tensor`);
}

function tensorFromBytes(raw: Uint8Array, entry: Entry): Tensor {
  const copy = new Uint8Array(raw);  // aligned copy whatever the offset in the file
  const { dtype, shape } = entry;
  switch (ELEMENT_SIZE[dtype]) {
    case 4:
      return dtype === 'f32'
        ? Tensor.from(new Float32Array(copy.buffer), shape, { dtype })
        : Tensor.from(new Int32Array(copy.buffer), shape, { dtype });
    case 2:
      return Tensor.from(new Uint16Array(copy.buffer), shape, { dtype });
    default:
      return Tensor.from(copy, shape, { dtype });
  }
}

/** The storage bytes of a tensor on the host: a cpu tensor's (zero-copy), a copy of a cuda tensor's. */
function hostBytes(tensor: Tensor): Uint8Array {
  if (tensor.device === 'cpu') {
    const view = tensor.view();
    return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  }
  const host = tensor.to('cpu');
  try {
    const view = host.view();
    return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
  } finally {
    host.dispose();
  }
}

function fileDType(dtype: DType): string {
  const entry = Object.entries(FILE_DTYPE).find(([, d]) => d === dtype);
  return entry ? entry[0] : dtype;
}
