// Symmetric 4-bit block quantization in com.microsoft.MatMulNBits layout (bits 4, block size B a power
// of two >= 16, zero point 8 implied): packed uint8 [N, ceil(K/B), B/2] with the low nibble first,
// scales [N * ceil(K/B)].

/**
 * The default block: 64. With its fp32 scale that is 0.5625 bytes per weight, what llama.cpp's Q4_0
 * stores (32 weights + an fp16 scale); block 32 stores 0.625. At Mistral-7B shape it decoded faster and
 * peaked lower than block 32; its price is a slightly larger logit error (docs/bench/model-engine.md,
 * "int4 variants"; --int4-block-size 32 keeps the finer blocks).
 */
export const INT4_BLOCK_SIZE = 64;
/** The block sizes MatMulNBits accepts for 4 bits. */
export const INT4_BLOCK_SIZES = [16, 32, 64, 128, 256] as const;

export interface Int4Weight {
  /** [outFeatures, blockCount, 16] packed nibbles */
  packed: Uint8Array;
  /** [outFeatures * blockCount] */
  scales: Float32Array;
  blockCount: number;
  blockSize: number;
}

/**
 * Quantizes a Hugging Face linear weight [outFeatures, inFeatures] (row = output feature).
 * Per block the value of largest magnitude maps to -8, so the full signed range [-8, 7] is used;
 * K that is not a multiple of the block is zero padded (padding quantizes to exactly 0).
 */
export function quantizeInt4(weight: Float32Array, outFeatures: number, inFeatures: number, blockSize: number = INT4_BLOCK_SIZE): Int4Weight {
  if (!(INT4_BLOCK_SIZES as readonly number[]).includes(blockSize))
    throw new Error(`int4 block size must be one of ${INT4_BLOCK_SIZES.join(', ')}, got ${blockSize}`);
  const blockCount = Math.ceil(inFeatures / blockSize);
  const packed = new Uint8Array(outFeatures * blockCount * (blockSize / 2));
  const scales = new Float32Array(outFeatures * blockCount);
  const block = new Float32Array(blockSize);
  for (let row = 0; row < outFeatures; row++) {
    for (let b = 0; b < blockCount; b++) {
      block.fill(0);
      let extreme = 0;
      for (let i = 0; i < blockSize; i++) {
        const k = b * blockSize + i;
        if (k >= inFeatures) break;
        const value = weight[row * inFeatures + k];
        block[i] = value;
        if (Math.abs(value) > Math.abs(extreme)) extreme = value;
      }
      const scale = extreme / -8;
      const inverse = scale === 0 ? 0 : 1 / scale;
      scales[row * blockCount + b] = scale;
      const base = (row * blockCount + b) * (blockSize / 2);
      for (let i = 0; i < blockSize; i += 2) {
        const low = Math.min(15, Math.max(0, Math.round(block[i] * inverse) + 8));
        const high = Math.min(15, Math.max(0, Math.round(block[i + 1] * inverse) + 8));
        packed[base + i / 2] = low | (high << 4);
      }
    }
  }
  return { packed, scales, blockCount, blockSize };
}

/** The weight the quantized form stands for, [outFeatures, inFeatures] (tests and error bounds). */
export function dequantizeInt4(quantized: Int4Weight, outFeatures: number, inFeatures: number): Float32Array {
  const out = new Float32Array(outFeatures * inFeatures);
  const { packed, scales, blockCount, blockSize } = quantized;
  for (let row = 0; row < outFeatures; row++) {
    for (let k = 0; k < inFeatures; k++) {
      const b = Math.floor(k / blockSize);
      const i = k % blockSize;
      const byte = packed[(row * blockCount + b) * (blockSize / 2) + (i >> 1)];
      const nibble = i & 1 ? byte >> 4 : byte & 0xf;
      out[row * inFeatures + k] = (nibble - 8) * scales[row * blockCount + b];
    }
  }
  return out;
}
