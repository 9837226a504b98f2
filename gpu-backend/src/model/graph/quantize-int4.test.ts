// int4 block quantization: MatMulNBits layout and the per-element error bound (half a step).

import { describe, expect, it } from 'vitest';
import { dequantizeInt4, quantizeInt4 } from './quantize-int4';

describe('quantizeInt4', () => {
  it('packs low nibble first with zero point 8 and the extreme value mapping to -8', () => {
    const row = new Float32Array(32);
    row[0] = -1.6; // extreme: scale = 0.2, code 0
    row[1] = 0.2; // code 9
    row[2] = 1.4; // code 15
    const { packed, scales, blockCount } = quantizeInt4(row, 1, 32);
    expect(blockCount).toBe(1);
    expect(scales[0]).toBeCloseTo(0.2, 6);
    expect(packed[0]).toBe(0 | (9 << 4));
    expect(packed[1] & 0xf).toBe(15);
    expect(packed[1] >> 4).toBe(8); // zero
  });

  it('error per element is at most half a quantization step; K not a multiple of 32 is padded', () => {
    const outFeatures = 5;
    const inFeatures = 45;
    const weight = new Float32Array(outFeatures * inFeatures).map((_, i) => Math.sin(i * 1.7) * (1 + (i % 7)));
    const quantized = quantizeInt4(weight, outFeatures, inFeatures, 32);
    expect(quantized.blockCount).toBe(2);
    const restored = dequantizeInt4(quantized, outFeatures, inFeatures);
    for (let i = 0; i < weight.length; i++) {
      const row = Math.floor(i / inFeatures);
      const block = Math.floor((i % inFeatures) / 32);
      expect(Math.abs(restored[i] - weight[i])).toBeLessThanOrEqual(Math.abs(quantized.scales[row * 2 + block]) / 2 + 1e-6);
    }
  });
});

describe('quantizeInt4 block sizes', () => {
  it('packs a 128-wide block as 64 bytes behind one scale, and restores within a step', () => {
    const weight = Float32Array.from({ length: 2 * 160 }, (_, i) => Math.cos(i * 0.37) * (1 + (i % 5)));
    const quantized = quantizeInt4(weight, 2, 160, 128);
    expect(quantized.blockCount).toBe(2); // 160 = 128 + 32 padded to 256
    expect(quantized.packed.length).toBe(2 * 2 * 64);
    expect(quantized.scales.length).toBe(4);
    // Row 0's first block: one scale for elements 0..127, so the extreme of all 128 maps to code 0.
    const first = Array.from(weight.subarray(0, 128));
    const extreme = first.reduce((best, v) => (Math.abs(v) > Math.abs(best) ? v : best), 0);
    expect(quantized.scales[0]).toBeCloseTo(extreme / -8, 6);
    const at = first.indexOf(extreme);
    expect((quantized.packed[at >> 1] >> ((at & 1) * 4)) & 0xf).toBe(0);
    // Padding (elements 160..255 of each row) quantizes to code 8, i.e. zero.
    expect(quantized.packed[64 + 63]).toBe(0x88);
    const restored = dequantizeInt4(quantized, 2, 160);
    for (let i = 0; i < weight.length; i++) {
      const scale = Math.abs(quantized.scales[Math.floor(i / 160) * 2 + Math.floor((i % 160) / 128)]);
      expect(Math.abs(restored[i] - weight[i])).toBeLessThanOrEqual(scale + 1e-6); // a step at most (+8 clips to +7)
    }
  });

  it('refuses a block size MatMulNBits does not take', () => {
    expect(() => quantizeInt4(new Float32Array(48), 1, 48, 48)).toThrow(/int4 block size must be one of 16, 32, 64, 128, 256, got 48/);
  });
});
