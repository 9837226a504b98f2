// The one rule for how many bytes a model's weights take in a weight format, derived from the tensor
// list (mistralTensors) the way buildModelGraph stores each tensor. Every size estimate (the KV budget,
// the external-data threshold, the benchmarks' bandwidth floors) calls these two functions.
//
// Storage per tensor kind, as model-graph.ts / graph-linear.ts emit it:
// - norms: the compute type (fp16 for the fp16 format, fp32 otherwise);
// - the embedding: the compute type, except in int4 when the hidden size is a multiple of B: then
//   GatherBlockQuantized blocks, B/2 packed bytes + one fp32 scale per B weights (no padded blocks);
// - projections [N, K]: fp32 4 B or fp16 2 B per weight; int4 MatMulNBits at block size B holds
//   N * ceil(K / B) blocks of B/2 packed bytes + one fp32 scale: 0.5 + 4/B bytes per weight
//   (0.625 at B = 32) when K is a multiple of B;
// - the LM head is always its own projection, a copy of the embedding when the two are tied.

import type { ModelConfig } from '../checkpoint/config';
import { type TensorSpec, mistralTensors } from '../checkpoint/mistral-tensors';
import type { WeightFormat } from '../runtime/engine-types';
import { INT4_BLOCK_SIZE } from './quantize-int4';

function tensorBytes(spec: TensorSpec, format: WeightFormat, int4BlockSize: number): number {
  const count = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.kind === 'embedding' && format === 'int4' && spec.shape[1] % int4BlockSize === 0) return (count / int4BlockSize) * (int4BlockSize / 2 + 4);
  if (spec.kind !== 'projection') return count * (format === 'fp16' ? 2 : 4);
  if (format !== 'int4') return count * (format === 'fp16' ? 2 : 4);
  const [outFeatures, inFeatures] = spec.shape;
  return outFeatures * Math.ceil(inFeatures / int4BlockSize) * (int4BlockSize / 2 + 4);
}

/** The tensors the built graph stores: the checkpoint's, plus the LM head's own copy when it is tied. */
function storedTensors(config: ModelConfig): TensorSpec[] {
  const specs = mistralTensors(config);
  if (config.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [config.vocabSize, config.hiddenSize], kind: 'projection' });
  return specs;
}

/** Bytes of every weight the built graph holds (what a session keeps in memory; rotary tables excluded). */
export function weightBytes(config: ModelConfig, format: WeightFormat, int4BlockSize = INT4_BLOCK_SIZE): number {
  return storedTensors(config).reduce((sum, spec) => sum + tensorBytes(spec, format, int4BlockSize), 0);
}

/**
 * Bytes of weights one decode step reads: every projection and the LM head once (norms are a rounding
 * error, the embedding is a one-row gather, so neither counts): the numerator of a bandwidth floor.
 */
export function weightBytesPerToken(config: ModelConfig, format: WeightFormat, int4BlockSize = INT4_BLOCK_SIZE): number {
  return storedTensors(config)
    .filter((spec) => spec.kind === 'projection')
    .reduce((sum, spec) => sum + tensorBytes(spec, format, int4BlockSize), 0);
}
