// The GGUF writer checked by a reader written from the GGUF spec (ggml/docs/gguf.md) and by hand-worked
// Q4_0 / Q8_0 blocks (ggml's reference quantizers, fp16 scale first), not by the writer's own helpers.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { permuteForInterleavedRope, readSentencePieceVocabulary } from './checkpoint-to-gguf';
import { writeGguf } from './gguf-writer';

/** IEEE 754 binary16 -> number, from the bit layout (1 sign, 5 exponent bias 15, 10 mantissa). */
function half(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

interface ParsedTensor {
  dims: number[];
  type: number;
  offset: number;
}

/** A spec reader: header, metadata (scalars, strings, arrays), tensor infos, data section start. */
function parseGguf(bytes: Buffer) {
  let at = 0;
  const u32 = () => ((at += 4), bytes.readUInt32LE(at - 4));
  const u64 = () => ((at += 8), Number(bytes.readBigUInt64LE(at - 8)));
  const str = () => {
    const length = u64();
    at += length;
    return bytes.toString('utf8', at - length, at);
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 4:
        return u32();
      case 5:
        return ((at += 4), bytes.readInt32LE(at - 4));
      case 6:
        return ((at += 4), bytes.readFloatLE(at - 4));
      case 7:
        return bytes[at++] === 1;
      case 8:
        return str();
      case 9: {
        const elementType = u32();
        const count = u64();
        return Array.from({ length: count }, () => value(elementType));
      }
      default:
        throw new Error(`unexpected value type ${type}`);
    }
  };
  const magic = bytes.toString('latin1', 0, 4);
  at = 4;
  const version = u32();
  const tensorCount = u64();
  const metadataCount = u64();
  const metadata: Record<string, { type: number; value: unknown }> = {};
  for (let i = 0; i < metadataCount; i++) {
    const key = str();
    const type = u32();
    metadata[key] = { type, value: value(type) };
  }
  const tensors: Record<string, ParsedTensor> = {};
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, () => u64());
    tensors[name] = { dims, type: u32(), offset: u64() };
  }
  const dataStart = Math.ceil(at / 32) * 32;
  return { magic, version, metadata, tensors, dataStart };
}

/** Dequantizes per the block layouts: Q4_0 = fp16 d + 16 bytes (element j low nibble, j+16 high), Q8_0 = fp16 d + 32 int8. */
function dequantize(bytes: Buffer, start: number, type: number, count: number): Float64Array {
  const out = new Float64Array(count);
  if (type === 0) for (let i = 0; i < count; i++) out[i] = bytes.readFloatLE(start + 4 * i);
  if (type === 1) for (let i = 0; i < count; i++) out[i] = half(bytes.readUInt16LE(start + 2 * i));
  if (type === 2) {
    for (let b = 0; b < count / 32; b++) {
      const d = half(bytes.readUInt16LE(start + 18 * b));
      for (let j = 0; j < 16; j++) {
        const byte = bytes[start + 18 * b + 2 + j];
        out[32 * b + j] = ((byte & 15) - 8) * d;
        out[32 * b + j + 16] = ((byte >> 4) - 8) * d;
      }
    }
  }
  if (type === 8) {
    for (let b = 0; b < count / 32; b++) {
      const d = half(bytes.readUInt16LE(start + 34 * b));
      for (let j = 0; j < 32; j++) out[32 * b + j] = bytes.readInt8(start + 34 * b + 2 + j) * d;
    }
  }
  return out;
}

const dir = await mkdtemp(join(tmpdir(), 'gguf-test-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('writeGguf', () => {
  // Block 0: x_j = (j - 16) / 4. Largest magnitude -4 -> d = -4 / -8 = 0.5, q_j = min(15, trunc(2 x_j + 8.5)).
  const ramp = Float32Array.from({ length: 32 }, (_, j) => (j - 16) / 4);
  const random = Float32Array.from({ length: 64 * 3 }, (_, i) => Math.sin(i * 12.9898) * 3.7);

  it('lays out header, metadata, tensor infos and aligned data as the spec says', async () => {
    const path = join(dir, 'small.gguf');
    await writeGguf(
      path,
      {
        'general.architecture': { type: 'string', value: 'llama' },
        'llama.block_count': { type: 'u32', value: 5 },
        'x.signed': { type: 'i32', value: -3 },
        'x.eps': { type: 'f32', value: 1e-5 },
        'x.flag': { type: 'bool', value: true },
        'tokenizer.ggml.tokens': { type: 'string[]', value: ['<unk>', '▁héllo'] },
        'tokenizer.ggml.scores': { type: 'f32[]', value: [0, -1.5] },
        'tokenizer.ggml.token_type': { type: 'i32[]', value: [2, 1] },
      },
      [
        { name: 'norm', dims: [3], type: 'F32', data: () => Float32Array.of(1, -2, 0.5) },
        { name: 'q4', dims: [32, 1], type: 'Q4_0', data: () => ramp },
        { name: 'q8', dims: [64, 3], type: 'Q8_0', data: () => random },
        { name: 'f16', dims: [64, 3], type: 'F16', data: () => random },
        { name: 'q4r', dims: [64, 3], type: 'Q4_0', data: () => random },
      ],
    );
    const bytes = await readFile(path);
    const gguf = parseGguf(bytes);
    expect(gguf.magic).toBe('GGUF');
    expect(gguf.version).toBe(3);
    expect(gguf.metadata['general.architecture']).toEqual({ type: 8, value: 'llama' });
    expect(gguf.metadata['llama.block_count']).toEqual({ type: 4, value: 5 });
    expect(gguf.metadata['x.signed']).toEqual({ type: 5, value: -3 });
    expect(gguf.metadata['x.eps'].value).toBeCloseTo(1e-5, 10);
    expect(gguf.metadata['x.flag']).toEqual({ type: 7, value: true });
    expect(gguf.metadata['tokenizer.ggml.tokens']).toEqual({ type: 9, value: ['<unk>', '▁héllo'] });
    expect(gguf.metadata['tokenizer.ggml.scores'].value).toEqual([0, -1.5]);
    expect(gguf.metadata['tokenizer.ggml.token_type'].value).toEqual([2, 1]);
    expect(Object.keys(gguf.tensors)).toEqual(['norm', 'q4', 'q8', 'f16', 'q4r']);
    expect(gguf.tensors.q8).toEqual({ dims: [64, 3], type: 8, offset: gguf.tensors.q8.offset });
    for (const tensor of Object.values(gguf.tensors)) expect(tensor.offset % 32).toBe(0);
    // Offsets follow each other: 12 bytes of F32 -> 32, one Q4_0 block of 18 bytes -> 64, 6 Q8_0 blocks = 204 -> 288.
    expect([gguf.tensors.norm.offset, gguf.tensors.q4.offset, gguf.tensors.q8.offset, gguf.tensors.f16.offset]).toEqual([0, 32, 64, 288]);
    const at = (name: string) => gguf.dataStart + gguf.tensors[name].offset;

    expect(Array.from(dequantize(bytes, at('norm'), 0, 3))).toEqual([1, -2, 0.5]);
    // The Q4_0 block by hand: d = 0.5 as fp16 (0x3800), then nibbles.
    expect(bytes.readUInt16LE(at('q4'))).toBe(0x3800);
    const low = [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8];
    const high = [8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 15];
    expect(Array.from(bytes.subarray(at('q4') + 2, at('q4') + 18))).toEqual(low.map((l, j) => l | (high[j] << 4)));

    const q8 = dequantize(bytes, at('q8'), 8, random.length);
    const f16 = dequantize(bytes, at('f16'), 1, random.length);
    const q4 = dequantize(bytes, at('q4r'), 2, random.length);
    for (let b = 0; b < random.length / 32; b++) {
      const block = random.subarray(32 * b, 32 * b + 32);
      const amax = Math.max(...block.map(Math.abs));
      const d = block.find((v) => Math.abs(v) === amax)! / -8; // the extreme maps to -8
      for (let j = 0; j < 32; j++) {
        const x = block[j];
        // Half a step, plus the fp16 rounding of d carried by up to 127 steps (127 * 2^-11 = 0.062 of a step).
        expect(Math.abs(q8[32 * b + j] - x)).toBeLessThanOrEqual((amax / 127) * (0.5 + 0.063));
        expect(Math.abs(f16[32 * b + j] - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -11);
        // Half a step, except past +7 steps on the side opposite the extreme, which clips to 7 (up to a step).
        const clipped = x / d > 7.5;
        expect(Math.abs(q4[32 * b + j] - x)).toBeLessThanOrEqual(Math.abs(d) * (clipped ? 1 : 0.5) * 1.01);
      }
    }
    // Q8_0's extreme maps to +-127 exactly.
    const firstBlock = random.subarray(0, 32);
    const extreme = firstBlock.reduce((best, v, j) => (Math.abs(v) > Math.abs(firstBlock[best]) ? j : best), 0);
    expect(Math.abs(bytes.readInt8(at('q8') + 2 + extreme))).toBe(127);
    expect(bytes.length % 32).toBe(0);
  });

  it('refuses a tensor whose values do not fill its dims', async () => {
    await expect(writeGguf(join(dir, 'bad.gguf'), {}, [{ name: 'w', dims: [32, 2], type: 'Q4_0', data: () => new Float32Array(32) }])).rejects.toThrow(
      /w: dims 32x2 need 64 values, got 32/,
    );
  });
});

describe('checkpoint conversion pieces', () => {
  it('moves q/k rows from rotate_half order to interleaved pairs', () => {
    // 1 head, headDim 4, 1 input feature: rows [a0, a1, b0, b1] (a_j pairs with b_j) -> [a0, b0, a1, b1].
    expect(Array.from(permuteForInterleavedRope(Float32Array.of(10, 11, 20, 21), 1, 4, 1))).toEqual([10, 20, 11, 21]);
    // 2 heads, headDim 2, 2 input features: each head's rows stay in place (one pair per head).
    expect(Array.from(permuteForInterleavedRope(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), 2, 2, 2))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('reads the Mistral v1 SentencePiece vocabulary', async () => {
    const vocabulary = readSentencePieceVocabulary(await readFile(join(__dirname, '../../../../shared/fixtures/tokenizer/tokenizer.model.v1')));
    expect(vocabulary.tokens.length).toBe(32000);
    expect(vocabulary.tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(Array.from(vocabulary.types.subarray(0, 4))).toEqual([2, 3, 3, 6]); // unknown, control, control, byte
    expect(vocabulary.types[259]).toBe(1);
    expect(vocabulary.tokens[259]).toBe('▁▁'); // the first merge piece of the v1 vocabulary
    expect(vocabulary.scores[259]).toBeLessThan(0);
  });
});
