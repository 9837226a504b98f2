// Writes GGUF v3 files (llama.cpp's model format) for the peer benchmark: typed metadata, and tensors as
// F32, F16, Q8_0 or Q4_0 blocks, encoded with the same rounding as ggml's reference quantizers.
//
// Layout (ggml/docs/gguf.md): "GGUF", u32 version 3, u64 tensor count, u64 metadata count, metadata
// (u64-length string key, u32 value type, value), tensor infos (name, u32 dims, u64 ne[0..dims) with ne[0]
// the contiguous axis, u32 ggml type, u64 offset into the data section), padding to `general.alignment`
// (32), then tensor data, each tensor starting at an aligned offset. Little-endian throughout.

import { open } from 'node:fs/promises';
import { float32ToFloat16Bits } from '../../src/model/checkpoint/float-bits';

export const GGUF_ALIGNMENT = 32;

/** gguf_metadata_value_type */
export const GGUF_VALUE_TYPE = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10 } as const;

/** ggml_type ids and block geometry (elements per block, bytes per block). */
export const GGML_TYPES = {
  F32: { id: 0, blockElements: 1, blockBytes: 4 },
  F16: { id: 1, blockElements: 1, blockBytes: 2 },
  Q4_0: { id: 2, blockElements: 32, blockBytes: 18 }, // fp16 d + 16 bytes of nibbles
  Q8_0: { id: 8, blockElements: 32, blockBytes: 34 }, // fp16 d + 32 int8
} as const;
export type GgmlType = keyof typeof GGML_TYPES;

export type GgufMetadataValue =
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'string[]'; value: string[] }
  | { type: 'f32[]'; value: Float32Array | number[] }
  | { type: 'i32[]'; value: Int32Array | number[] };

export interface GgufTensor {
  name: string;
  /** ggml order: dims[0] is the contiguous axis (a Hugging Face [out, in] weight is [in, out] here). */
  dims: number[];
  type: GgmlType;
  /** Row-major values, dims[0] fastest; called once, when the tensor is written. */
  data: () => Float32Array | Promise<Float32Array>;
}

export function tensorByteSize(dims: number[], type: GgmlType): number {
  const { blockElements, blockBytes } = GGML_TYPES[type];
  if (dims[0] % blockElements !== 0) throw new Error(`${type}: first dimension ${dims[0]} is not a multiple of ${blockElements}`);
  return (dims.reduce((a, b) => a * b, 1) / blockElements) * blockBytes;
}

/** ggml quantize_row_q4_0_ref: d = (value of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5)); nibble j low, j + 16 high. */
export function encodeQ4_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 32) * 18);
  const view = new DataView(out.buffer);
  for (let block = 0; block < values.length / 32; block++) {
    const base = block * 32;
    let max = 0;
    let amax = 0;
    for (let j = 0; j < 32; j++) {
      const v = values[base + j];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    view.setUint16(block * 18, float32ToFloat16Bits(d), true);
    for (let j = 0; j < 16; j++) {
      const low = Math.min(15, Math.trunc(Math.fround(Math.fround(values[base + j] * id) + 8.5)));
      const high = Math.min(15, Math.trunc(Math.fround(Math.fround(values[base + 16 + j] * id) + 8.5)));
      out[block * 18 + 2 + j] = low | (high << 4);
    }
  }
  return out;
}

/** ggml quantize_row_q8_0_ref: d = max|x| / 127, q = roundf(x / d) (halves away from zero). */
export function encodeQ8_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 32) * 34);
  const view = new DataView(out.buffer);
  for (let block = 0; block < values.length / 32; block++) {
    const base = block * 32;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[base + j]));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    view.setUint16(block * 34, float32ToFloat16Bits(d), true);
    for (let j = 0; j < 32; j++) {
      const x = Math.fround(values[base + j] * id);
      view.setInt8(block * 34 + 2 + j, Math.sign(x) * Math.round(Math.abs(x)));
    }
  }
  return out;
}

export function encodeTensor(values: Float32Array, type: GgmlType): Uint8Array {
  if (type === 'F32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  if (type === 'Q4_0') return encodeQ4_0(values);
  if (type === 'Q8_0') return encodeQ8_0(values);
  const half = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) half[i] = float32ToFloat16Bits(values[i]);
  return new Uint8Array(half.buffer);
}

/** Appends little-endian scalars and strings to a growing byte list (header only: small). */
class HeaderBytes {
  private chunks: Uint8Array[] = [];
  length = 0;
  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }
  private scalar(size: number, write: (view: DataView) => void): void {
    const bytes = new Uint8Array(size);
    write(new DataView(bytes.buffer));
    this.push(bytes);
  }
  u32 = (v: number) => this.scalar(4, (d) => d.setUint32(0, v, true));
  i32 = (v: number) => this.scalar(4, (d) => d.setInt32(0, v, true));
  f32 = (v: number) => this.scalar(4, (d) => d.setFloat32(0, v, true));
  u64 = (v: number) => this.scalar(8, (d) => d.setBigUint64(0, BigInt(v), true));
  u8 = (v: number) => this.scalar(1, (d) => d.setUint8(0, v));
  string(value: string): void {
    const bytes = new TextEncoder().encode(value);
    this.u64(bytes.length);
    this.push(bytes);
  }
  zeros(count: number): void {
    this.push(new Uint8Array(count));
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

function writeMetadataValue(out: HeaderBytes, entry: GgufMetadataValue): void {
  const T = GGUF_VALUE_TYPE;
  const array = (elementType: number, count: number, each: (i: number) => void) => {
    out.u32(T.ARRAY);
    out.u32(elementType);
    out.u64(count);
    for (let i = 0; i < count; i++) each(i);
  };
  switch (entry.type) {
    case 'u32':
      return (out.u32(T.UINT32), out.u32(entry.value));
    case 'i32':
      return (out.u32(T.INT32), out.i32(entry.value));
    case 'f32':
      return (out.u32(T.FLOAT32), out.f32(entry.value));
    case 'bool':
      return (out.u32(T.BOOL), out.u8(entry.value ? 1 : 0));
    case 'string':
      return (out.u32(T.STRING), out.string(entry.value));
    case 'string[]':
      return array(T.STRING, entry.value.length, (i) => out.string((entry.value as string[])[i]));
    case 'f32[]':
      return array(T.FLOAT32, entry.value.length, (i) => out.f32(entry.value[i]));
    case 'i32[]':
      return array(T.INT32, entry.value.length, (i) => out.i32(entry.value[i]));
  }
}

const align = (offset: number) => Math.ceil(offset / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;

/** Writes `path`; tensors are encoded one at a time, so memory holds one tensor, not the model. */
export async function writeGguf(path: string, metadata: Record<string, GgufMetadataValue>, tensors: GgufTensor[]): Promise<void> {
  const header = new HeaderBytes();
  header.u32(0x46554747); // "GGUF" read as a little-endian u32
  header.u32(3);
  header.u64(tensors.length);
  header.u64(Object.keys(metadata).length);
  for (const [key, value] of Object.entries(metadata)) {
    header.string(key);
    writeMetadataValue(header, value);
  }
  const offsets: number[] = [];
  let dataSize = 0;
  for (const tensor of tensors) {
    header.string(tensor.name);
    header.u32(tensor.dims.length);
    for (const dim of tensor.dims) header.u64(dim);
    header.u32(GGML_TYPES[tensor.type].id);
    dataSize = align(dataSize);
    offsets.push(dataSize);
    header.u64(dataSize);
    dataSize += tensorByteSize(tensor.dims, tensor.type);
  }
  header.zeros(align(header.length) - header.length);
  const dataStart = header.length;
  const file = await open(path, 'w');
  try {
    await file.write(header.bytes(), 0, dataStart, 0);
    for (const [i, tensor] of tensors.entries()) {
      const values = await tensor.data();
      const count = tensor.dims.reduce((a, b) => a * b, 1);
      if (values.length !== count) throw new Error(`${tensor.name}: dims ${tensor.dims.join('x')} need ${count} values, got ${values.length}`);
      const bytes = encodeTensor(values, tensor.type);
      for (let done = 0; done < bytes.length; )
        done += (await file.write(bytes, done, Math.min(bytes.length - done, 1 << 30), dataStart + offsets[i] + done)).bytesWritten;
    }
    // The last tensor may end unaligned; llama.cpp accepts that, but pad so the file size is a multiple too.
    const end = dataStart + align(dataSize);
    await file.truncate(end);
  } finally {
    await file.close();
  }
}
