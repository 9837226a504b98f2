import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits } from './float-bits';
import { SafetensorsFile, writeSafetensors } from './safetensors';

const dir = mkdtempSync(join(tmpdir(), 'safetensors-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file built byte by byte, independent of writeSafetensors, so the reader is checked against the format itself. */
function handMade(name: string, header: unknown, data: Uint8Array, headerText?: string): string {
  const json = Buffer.from(headerText ?? JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.byteLength));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([prefix, json, data]));
  return path;
}

async function openError(path: string): Promise<string> {
  try {
    const file = await SafetensorsFile.open(path);
    await file.close();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected open to fail');
}

describe('16-bit float conversions (hand-computed bit patterns)', () => {
  it('fp16', () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2.5)).toBe(0xc100);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff); // largest finite half
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // rounds up to inf
    expect(float32ToFloat16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float32ToFloat16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp: tie to even
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000); // 0.5 ulp: tie to even (zero)
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway, even stays
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway, odd rounds up
    expect(float32ToFloat16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(float16BitsToFloat32(0x3c00)).toBe(1);
    expect(float16BitsToFloat32(0xc100)).toBe(-2.5);
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(float16BitsToFloat32(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(float16BitsToFloat32(0x7e00)).toBeNaN();
  });

  it('bf16', () => {
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(-2.5)).toBe(0xc020);
    expect(float32ToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // halfway, even stays
    expect(float32ToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // halfway, odd rounds up
    expect(float32ToBfloat16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // above halfway
    expect(float32ToBfloat16Bits(2 ** -130)).toBe(0x0008); // float32 subnormal keeps its top bits
    expect(float32ToBfloat16Bits(Number.NaN) & 0x7fc0).toBe(0x7fc0);
    expect(bfloat16BitsToFloat32(0x3f80)).toBe(1);
    expect(bfloat16BitsToFloat32(0xc020)).toBe(-2.5);
    expect(bfloat16BitsToFloat32(0x0001)).toBe(2 ** -133);
  });
});

describe('SafetensorsFile', () => {
  it('reads a hand-made file with F32, F16 and BF16 tensors', async () => {
    const data = new Uint8Array([
      ...new Uint8Array(new Float32Array([1, -2.5]).buffer), // F32 [2]
      0x00,
      0x3c,
      0x00,
      0xc1,
      0x01,
      0x00, // F16 [3]: 1, -2.5, 2^-24
      0x80,
      0x3f,
      0x20,
      0xc0, // BF16 [2]: 1, -2.5
    ]);
    const path = handMade(
      'mixed.safetensors',
      {
        __metadata__: { format: 'pt' },
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F16', shape: [3], data_offsets: [8, 14] },
        c: { dtype: 'BF16', shape: [1, 2], data_offsets: [14, 18] },
      },
      data,
    );
    const file = await SafetensorsFile.open(path);
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.tensorNames().sort()).toEqual(['a', 'b', 'c']);
    expect([...(await file.readFloat32('a'))]).toEqual([1, -2.5]);
    expect([...(await file.readFloat32('b'))]).toEqual([1, -2.5, 2 ** -24]);
    expect([...(await file.readFloat32('c'))]).toEqual([1, -2.5]);
    const raw = await file.readRaw('b');
    expect(raw.dtype).toBe('F16');
    expect(raw.shape).toEqual([3]);
    expect([...raw.bytes]).toEqual([0x00, 0x3c, 0x00, 0xc1, 0x01, 0x00]);
    expect(file.info('c').shape).toEqual([1, 2]);
    await file.close();
  });

  it('round-trips through writeSafetensors in every float dtype, with an aligned header', async () => {
    const values = new Float32Array([1, -2.5, 2 ** -24, 0.1, 65504, -0]);
    const path = join(dir, 'roundtrip.safetensors');
    await writeSafetensors(path, [
      { name: 'f32', shape: [2, 3], dtype: 'F32', data: values },
      { name: 'f16', shape: [6], dtype: 'F16', data: () => values },
      { name: 'bf16', shape: [3, 2], dtype: 'BF16', data: values },
      { name: 'empty', shape: [0, 4], dtype: 'F32', data: new Float32Array(0) },
    ]);
    const bytes = readFileSync(path);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
    const file = await SafetensorsFile.open(path);
    expect([...(await file.readFloat32('f32'))]).toEqual([...values]);
    expect([...(await file.readFloat32('f16'))]).toEqual([1, -2.5, 2 ** -24, float16BitsToFloat32(0x2e66), 65504, -0]);
    expect([...(await file.readFloat32('bf16'))]).toEqual([1, -2.5, 2 ** -24, bfloat16BitsToFloat32(0x3dcd), 65536, -0]);
    expect((await file.readRaw('bf16')).bytes.slice(0, 4)).toEqual(new Uint8Array([0x80, 0x3f, 0x20, 0xc0]));
    expect((await file.readFloat32('empty')).length).toBe(0);
    await file.close();
  });

  it('rejects a data size that does not match the shape when writing', async () => {
    await expect(writeSafetensors(join(dir, 'bad-write.safetensors'), [{ name: 'w', shape: [3], dtype: 'F32', data: new Float32Array(2) }])).rejects.toThrow(
      '"w"',
    );
  });

  it('reports a truncated file, naming the file and the tensor', async () => {
    const path = join(dir, 'truncated.safetensors');
    await writeSafetensors(path, [
      { name: 'first', shape: [4], dtype: 'F32', data: new Float32Array(4) },
      { name: 'second', shape: [4], dtype: 'F32', data: new Float32Array(4) },
    ]);
    truncateSync(path, readFileSync(path).byteLength - 3);
    const message = await openError(path);
    expect(message).toContain(path);
    expect(message).toContain('truncated');
    expect(message).toContain('"second"');
    truncateSync(path, 5);
    expect(await openError(path)).toContain('truncated');
    truncateSync(path, 20);
    expect(await openError(path)).toContain('truncated file (header needs');
  });

  it('reports a corrupted header', async () => {
    expect(await openError(handMade('garbage.safetensors', null, new Uint8Array(4), '{"a": {"dtype": "F3'))).toContain('corrupted header');
    expect(await openError(handMade('array.safetensors', [1, 2], new Uint8Array(0)))).toContain('corrupted header');
    expect(await openError(handMade('metadata.safetensors', { __metadata__: { step: 3 } }, new Uint8Array(0)))).toContain('"__metadata__"');
    const huge = join(dir, 'huge.safetensors');
    const prefix = Buffer.alloc(16);
    prefix.writeBigUInt64LE(0xffffffffffn);
    writeFileSync(huge, prefix);
    expect(await openError(huge)).toContain('corrupted header');
  });

  it('reports shape/byte mismatches, overlaps, gaps and unknown dtypes by tensor name', async () => {
    const data = new Uint8Array(16);
    expect(await openError(handMade('mismatch.safetensors', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, data))).toMatch(
      /"w".*16 bytes stored but shape \[3\] of F32 needs 12/,
    );
    expect(
      await openError(
        handMade(
          'overlap.safetensors',
          {
            a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
            b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
          },
          data,
        ),
      ),
    ).toContain('"b" overlaps');
    expect(await openError(handMade('gap.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, data))).toContain('before tensor "a"');
    expect(await openError(handMade('trailing.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data))).toContain('trailing');
    expect(await openError(handMade('unknown.safetensors', { q: { dtype: 'Q4_K', shape: [16], data_offsets: [0, 16] } }, data))).toMatch(
      /"q".*unknown dtype "Q4_K"/,
    );
    expect(await openError(handMade('offsets.safetensors', { a: { dtype: 'F32', shape: [4], data_offsets: [16, 0] } }, data))).toContain('data_offsets');
  });

  it('opens a file with an I8 tensor but refuses to read it as floats, naming the tensor and dtype', async () => {
    const path = handMade('int8.safetensors', { quantized: { dtype: 'I8', shape: [4, 4], data_offsets: [0, 16] } }, new Uint8Array(16));
    const file = await SafetensorsFile.open(path);
    await expect(file.readFloat32('quantized')).rejects.toThrow(/"quantized" has unsupported dtype I8/);
    await expect(file.readRaw('missing')).rejects.toThrow('no tensor "missing"');
    await file.close();
  });

  it('names the path when the file cannot be opened', async () => {
    expect(await openError(join(dir, 'nope.safetensors'))).toContain('nope.safetensors');
  });
});
