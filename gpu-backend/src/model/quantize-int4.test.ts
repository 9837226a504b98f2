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
    const quantized = quantizeInt4(weight, outFeatures, inFeatures);
    expect(quantized.blockCount).toBe(2);
    const restored = dequantizeInt4(quantized, outFeatures, inFeatures);
    for (let i = 0; i < weight.length; i++) {
      const row = Math.floor(i / inFeatures);
      const block = Math.floor((i % inFeatures) / 32);
      expect(Math.abs(restored[i] - weight[i])).toBeLessThanOrEqual(Math.abs(quantized.scales[row * 2 + block]) / 2 + 1e-6);
    }
  });
});
