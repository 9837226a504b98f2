// Emits linear layers, the token embedding and per-channel vectors in the chosen weight format: fp32/fp16
// MatMul on the transposed weight, or int4 com.microsoft.MatMulNBits straight from the [out, in] layout
// (and an int4 embedding read by com.microsoft.GatherBlockQuantized).

import type { ModelConfig } from '../checkpoint/config';
import type { WeightFormat } from '../runtime/engine-types';
import { float32ToSixteenBit } from '../checkpoint/float-bits';
import { type GraphBuilder, bytesOf } from './graph-builder';
import type { OnnxDataType } from './onnx-proto-writer';
import { quantizeInt4 } from './quantize-int4';

export interface GraphContext {
  g: GraphBuilder;
  config: ModelConfig;
  format: WeightFormat;
  /** Activation type: float16 for the fp16 format, and for int4 where the provider wants it (CUDA). */
  computeType: 'float32' | 'float16';
  /** MatMulNBits accuracy_level (0 = fp32 compute, 4 = int8 activations, faster, less exact). */
  int4AccuracyLevel: number;
  /** MatMulNBits block_size: weights per scale (one scale in the compute type per block). */
  int4BlockSize: number;
}

/** Bytes of `values` in the context's compute type. */
export function computeBytes(ctx: GraphContext, values: Float32Array): { dataType: OnnxDataType; bytes: Uint8Array } {
  if (ctx.computeType === 'float32') return { dataType: 'float32', bytes: bytesOf(values) };
  return { dataType: 'float16', bytes: bytesOf(float32ToSixteenBit(values, 'F16')) };
}

/** An initializer in the compute type (norm weights, rotary caches, embeddings, scalars). */
export function emitVector(ctx: GraphContext, name: string, values: Float32Array, dims: number[]): string {
  const { dataType, bytes } = computeBytes(ctx, values);
  return ctx.g.initializer(name, dataType, dims, bytes);
}

/** input [..., inFeatures] -> [..., outFeatures] for a Hugging Face weight [outFeatures, inFeatures]. */
export function emitLinear(ctx: GraphContext, input: string, name: string, weight: Float32Array, outFeatures: number, inFeatures: number): string {
  if (weight.length !== outFeatures * inFeatures) {
    throw new Error(`${name}: expected ${outFeatures}x${inFeatures} weights, got ${weight.length} values`);
  }
  if (ctx.format === 'int4') {
    const quantized = quantizeInt4(weight, outFeatures, inFeatures, ctx.int4BlockSize);
    const packed = ctx.g.initializer(`${name}.qweight`, 'uint8', [outFeatures, quantized.blockCount, ctx.int4BlockSize / 2], quantized.packed);
    // MatMulNBits takes its scales in the activations' type.
    const scaleBytes = computeBytes(ctx, quantized.scales);
    const scales = ctx.g.initializer(`${name}.scales`, scaleBytes.dataType, [outFeatures * quantized.blockCount], scaleBytes.bytes);
    const attributes = {
      K: { i: inFeatures },
      N: { i: outFeatures },
      bits: { i: 4 },
      block_size: { i: ctx.int4BlockSize },
      accuracy_level: { i: ctx.int4AccuracyLevel },
    };
    return ctx.g.op('MatMulNBits', [input, packed, scales], attributes, 'com.microsoft');
  }
  // MatMul wants [in, out]: transpose once at build time.
  const transposed = new Float32Array(weight.length);
  for (let o = 0; o < outFeatures; o++) {
    const row = o * inFeatures;
    for (let i = 0; i < inFeatures; i++) transposed[i * outFeatures + o] = weight[row + i];
  }
  const initializer = emitVector(ctx, `${name}.weight`, transposed, [inFeatures, outFeatures]);
  return ctx.g.op('MatMul', [input, initializer]);
}

/**
 * Embedding rows for `ids` [batch, sequence] -> [batch, sequence, hiddenSize] from a [vocabSize, hiddenSize]
 * table. int4 keeps the table in MatMulNBits' block layout (as llama.cpp's Q4_0 token_embd), a quarter
 * of fp32's bytes plus scales: GatherBlockQuantized dequantizes only the gathered rows. A hidden size that
 * is not a multiple of the block keeps the fp32 table (the op has no padded blocks).
 */
export function emitEmbedding(ctx: GraphContext, name: string, table: Float32Array, vocabSize: number, hiddenSize: number, ids: string): string {
  if (ctx.format !== 'int4' || hiddenSize % ctx.int4BlockSize !== 0) {
    return ctx.g.op('Gather', [emitVector(ctx, name, table, [vocabSize, hiddenSize]), ids], { axis: { i: 0 } });
  }
  const quantized = quantizeInt4(table, vocabSize, hiddenSize, ctx.int4BlockSize);
  const packed = ctx.g.initializer(`${name}.qweight`, 'uint8', [vocabSize, hiddenSize / 2], quantized.packed);
  // The scales' type is the gathered rows' type.
  const scaleBytes = computeBytes(ctx, quantized.scales);
  const scales = ctx.g.initializer(`${name}.scales`, scaleBytes.dataType, [vocabSize, quantized.blockCount], scaleBytes.bytes);
  // uint8 data with bits 4: two weights a byte, low nibble first; no zero points means 8, as MatMulNBits.
  const attributes = { gather_axis: { i: 0 }, quantize_axis: { i: 1 }, block_size: { i: ctx.int4BlockSize }, bits: { i: 4 } };
  return ctx.g.op('GatherBlockQuantized', [packed, ids, scales], attributes, 'com.microsoft');
}
