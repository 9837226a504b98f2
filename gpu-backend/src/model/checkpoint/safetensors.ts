// Reads and writes the safetensors format: 8-byte little-endian header length, JSON header, raw tensor bytes.
// Reading is one tensor at a time by positional reads, so multi-GB checkpoints never sit in memory whole.

import { open, type FileHandle } from 'node:fs/promises';
import { float32ToSixteenBit, sixteenBitToFloat32 } from './float-bits';

/** Every dtype the format defines, with its size in bytes; only the float ones can be read as numbers here. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

export type FloatDtype = 'F32' | 'F16' | 'BF16';
export const FLOAT_DTYPES: readonly FloatDtype[] = ['F32', 'F16', 'BF16'];

/** The safetensors format caps the header at 100 MB; anything larger is a corrupt length field. */
const MAX_HEADER_BYTES = 100_000_000;
/** One read or write call stays well below Node's 2 GB limit per call. */
const IO_CHUNK_BYTES = 64 * 1024 * 1024;

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte range in the file: [begin, end). */
  begin: number;
  end: number;
}

export interface RawTensor {
  dtype: FloatDtype;
  shape: number[];
  /** Little-endian element bytes exactly as stored. */
  bytes: Uint8Array;
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  dtype: FloatDtype;
  /** Float32Array values (converted to dtype), raw dtype bytes, or a producer called once when the tensor is written. */
  data: Float32Array | Uint8Array | (() => Float32Array | Uint8Array);
}

function elementCount(shape: number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

function isFloatDtype(dtype: string): dtype is FloatDtype {
  return (FLOAT_DTYPES as readonly string[]).includes(dtype);
}

async function readExactly(handle: FileHandle, target: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < target.byteLength) {
    const length = Math.min(IO_CHUNK_BYTES, target.byteLength - done);
    const { bytesRead } = await handle.read(target, done, length, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

function parseEntry(path: string, name: string, entry: unknown, dataStart: number): TensorInfo {
  const fail = (why: string) => new SafetensorsError(`${path}: tensor "${name}": ${why}`);
  if (typeof entry !== 'object' || entry === null) throw fail('header entry is not an object');
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) throw fail(`unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw fail(`shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    throw fail(`data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  }
  const expected = elementCount(shape) * DTYPE_BYTES[dtype];
  const actual = offsets[1] - offsets[0];
  if (actual !== expected) {
    throw fail(`${actual} bytes stored but shape [${shape.join(', ')}] of ${dtype} needs ${expected}`);
  }
  return { name, dtype, shape: [...shape], begin: dataStart + offsets[0], end: dataStart + offsets[1] };
}

/** An open safetensors file: header parsed and validated at open, tensors read on demand. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    private readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      throw new SafetensorsError(`${path}: cannot open (${(error as Error).message})`);
    }
    try {
      const { tensors, metadata } = await SafetensorsFile.readHeader(path, handle);
      return new SafetensorsFile(path, handle, tensors, metadata);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  private static async readHeader(path: string, handle: FileHandle) {
    const fileSize = (await handle.stat()).size;
    if (fileSize < 8) throw new SafetensorsError(`${path}: truncated file (${fileSize} bytes, no header length)`);
    const lengthBytes = new Uint8Array(8);
    await readExactly(handle, lengthBytes, 0);
    const headerLength = Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
    if (headerLength > MAX_HEADER_BYTES) throw new SafetensorsError(`${path}: corrupted header (length field says ${headerLength} bytes)`);
    if (8 + headerLength > fileSize) {
      throw new SafetensorsError(`${path}: truncated file (header needs ${8 + headerLength} bytes, file has ${fileSize})`);
    }
    const headerBytes = new Uint8Array(headerLength);
    await readExactly(handle, headerBytes, 8);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
    } catch (error) {
      throw new SafetensorsError(`${path}: corrupted header (not valid JSON: ${(error as Error).message})`);
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      throw new SafetensorsError(`${path}: corrupted header (expected a JSON object)`);
    }
    const dataStart = 8 + headerLength;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (typeof entry !== 'object' || entry === null || Object.values(entry).some((value) => typeof value !== 'string')) {
          throw new SafetensorsError(`${path}: corrupted header ("__metadata__" must map strings to strings)`);
        }
        metadata = entry as Record<string, string>;
        continue;
      }
      tensors.set(name, parseEntry(path, name, entry, dataStart));
    }
    SafetensorsFile.checkLayout(path, [...tensors.values()], dataStart, fileSize);
    return { tensors, metadata };
  }

  /** Tensors must tile the data section exactly: no overlap, no gap, nothing past the end of the file. */
  private static checkLayout(path: string, tensors: TensorInfo[], dataStart: number, fileSize: number): void {
    const sorted = tensors.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
    let cursor = dataStart;
    for (const tensor of sorted) {
      if (tensor.begin < cursor) throw new SafetensorsError(`${path}: tensor "${tensor.name}" overlaps the tensor before it`);
      if (tensor.begin > cursor) throw new SafetensorsError(`${path}: gap of ${tensor.begin - cursor} bytes before tensor "${tensor.name}"`);
      if (tensor.end > fileSize) {
        throw new SafetensorsError(`${path}: truncated file (tensor "${tensor.name}" ends at byte ${tensor.end}, file has ${fileSize})`);
      }
      cursor = tensor.end;
    }
    if (cursor !== fileSize) throw new SafetensorsError(`${path}: ${fileSize - cursor} trailing bytes after the last tensor`);
  }

  tensorNames(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(`${this.path}: no tensor "${name}"`);
    return info;
  }

  async readRaw(name: string): Promise<RawTensor> {
    const info = this.info(name);
    if (!isFloatDtype(info.dtype)) {
      throw new SafetensorsError(`${this.path}: tensor "${name}" has unsupported dtype ${info.dtype} (expected one of ${FLOAT_DTYPES.join(', ')})`);
    }
    const bytes = new Uint8Array(info.end - info.begin);
    const got = await readExactly(this.handle, bytes, info.begin);
    if (got !== bytes.byteLength) {
      throw new SafetensorsError(`${this.path}: truncated file while reading tensor "${name}" (${got} of ${bytes.byteLength} bytes)`);
    }
    return { dtype: info.dtype, shape: [...info.shape], bytes };
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const { dtype, bytes } = await this.readRaw(name);
    if (dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    return sixteenBitToFloat32(bytes, dtype);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

function tensorBytes(tensor: TensorToWrite, data: Float32Array | Uint8Array): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (tensor.dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bits = float32ToSixteenBit(data, tensor.dtype);
  return new Uint8Array(bits.buffer);
}

/** Writes tensors in the given order, streaming each one to disk (producers are called one at a time). */
export async function writeSafetensors(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const sizes: number[] = [];
  for (const tensor of tensors) {
    if (!isFloatDtype(tensor.dtype)) throw new SafetensorsError(`${path}: cannot write tensor "${tensor.name}" as ${tensor.dtype}`);
    if (tensor.name in header) throw new SafetensorsError(`${path}: tensor "${tensor.name}" given twice`);
    const size = elementCount(tensor.shape) * DTYPE_BYTES[tensor.dtype];
    header[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + size] };
    sizes.push(size);
    offset += size;
  }
  // Pad the JSON with spaces so tensor data starts 8-byte aligned, as the reference writer does.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf-8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(jsonBytes.byteLength));

  const handle = await open(path, 'w');
  let position = 0;
  const writeAll = async (bytes: Uint8Array) => {
    for (let done = 0; done < bytes.byteLength; ) {
      const length = Math.min(IO_CHUNK_BYTES, bytes.byteLength - done);
      const { bytesWritten } = await handle.write(bytes, done, length, position);
      done += bytesWritten;
      position += bytesWritten;
    }
  };
  try {
    await writeAll(prefix);
    await writeAll(jsonBytes);
    for (let i = 0; i < tensors.length; i++) {
      const tensor = tensors[i];
      const data = typeof tensor.data === 'function' ? tensor.data() : tensor.data;
      const bytes = tensorBytes(tensor, data);
      if (bytes.byteLength !== sizes[i]) {
        throw new SafetensorsError(
          `${path}: tensor "${tensor.name}" data has ${bytes.byteLength} bytes, shape [${tensor.shape.join(', ')}] of ${tensor.dtype} needs ${sizes[i]}`,
        );
      }
      await writeAll(bytes);
    }
  } finally {
    await handle.close();
  }
}
