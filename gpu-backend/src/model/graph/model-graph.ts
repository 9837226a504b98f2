// Builds the whole Mistral ONNX graph from a checkpoint: embedding, per layer RMSNorm (the residual add
// fused into SkipSimplifiedLayerNormalization), packed QKV, attention, o_proj, packed SwiGLU MLP,
// final norm, and the LM head on the selected rows only (`logits_index`).

import type { ModelConfig } from '../checkpoint/config';
import { type WeightFormat, computeTypeOf } from '../runtime/engine-types';
import {
  type AttentionInputs,
  type AttentionKind,
  type CacheIo,
  chooseAttention,
  emitAttention,
  emitProbabilitySplit,
  emitRotaryCaches,
  presentOutputName,
} from './graph-attention';
import { type ExternalDataWriter, GraphBuilder } from './graph-builder';
import { type GraphContext, emitEmbedding, emitLinear, emitVector } from './graph-linear';
import type { OnnxModel } from './onnx-proto-writer';
import { INT4_BLOCK_SIZE } from './quantize-int4';
import { emitResidentPast, emitResidentPresent } from './resident-kv-graph';

/** Bump when the emitted graph changes: it is part of the ONNX cache key. */
export const GRAPH_BUILDER_VERSION = '7';

/** What the builder needs from a checkpoint (H1's Checkpoint satisfies it). */
export interface WeightSource {
  readonly config: ModelConfig;
  readFloat32(name: string): Float32Array | Promise<Float32Array>;
  has(name: string): boolean;
}

export interface GraphOptions {
  format: WeightFormat;
  /** Defaults to chooseAttention(headDim). */
  attention?: AttentionKind;
  int4AccuracyLevel?: number;
  /** MatMulNBits block_size (default INT4_BLOCK_SIZE). */
  int4BlockSize?: number;
  /** Element type of the KV cache (past inputs, new key/value outputs); default the compute type. */
  kvType?: 'float32' | 'float16';
  /** Activation type; default the format's own (computeTypeOf). int4 computes in either (fp16 on CUDA). */
  computeType?: 'float32' | 'float16';
  /** Default 'new-rows'; 'shared-buffer' needs attention 'fused' and the cache in the compute type; 'resident' (WebGPU) any. */
  cacheIo?: CacheIo;
}

export interface BuiltGraph {
  model: OnnxModel;
  attention: AttentionKind;
  computeType: 'float32' | 'float16';
  cacheType: 'float32' | 'float16';
}

async function concatWeights(source: WeightSource, names: string[]): Promise<Float32Array> {
  const parts = [];
  for (const name of names) parts.push(await source.readFloat32(name));
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * `onLayer(done, total)` is called after the embedding (done 0), after each layer and after the LM head
 * (done = total = layerCount + 1): the reading and converting of a long build, for a progress display.
 */
export async function buildModelGraph(
  source: WeightSource,
  options: GraphOptions,
  external: ExternalDataWriter | null,
  onLayer?: (done: number, total: number) => void,
): Promise<BuiltGraph> {
  const config = source.config;
  const { hiddenSize, intermediateSize, queryHeadCount, keyValueHeadCount, headDim, vocabSize, rmsNormEps } = config;
  const attention = options.attention ?? chooseAttention(headDim);
  const computeType = options.computeType ?? computeTypeOf(options.format);
  const g = new GraphBuilder(external);
  const ctx: GraphContext = {
    g,
    config,
    format: options.format,
    computeType,
    int4AccuracyLevel: options.int4AccuracyLevel ?? 0,
    int4BlockSize: options.int4BlockSize ?? INT4_BLOCK_SIZE,
  };
  const cacheType = options.kvType ?? computeType;
  const cacheIo = options.cacheIo ?? 'new-rows';
  if (cacheIo === 'shared-buffer' && (attention !== 'fused' || cacheType !== computeType)) {
    throw new Error(`a shared-buffer KV cache needs fused attention and the cache in the compute type (got ${attention}, ${cacheType} cache)`);
  }

  const inputIds = g.input('input_ids', 'int64', ['batch', 'sequence']);
  const positionIds = g.input('position_ids', 'int64', ['batch', 'sequence']);
  const logitsIndex = g.input('logits_index', 'int64', ['rows']); // flattened batch * sequence row per wanted logits row
  const attentionInputs: AttentionInputs = { positionIds, cacheType, cacheIo, ...emitRotaryCaches(ctx) };
  if (attention !== 'fused') {
    const bias = g.input('attention_bias', 'float32', ['mask_batch', 1, 'group_size', 'mask_queries', 'keys']);
    attentionInputs.attentionBias = computeType === 'float32' ? bias : g.op('Cast', [bias], { to: { i: 10 } });
  }
  if (attention !== 'unfused') {
    attentionInputs.seqlensK = g.input('seqlens_k', 'int32', ['batch']);
    attentionInputs.totalSequenceLength = g.input('total_sequence_length', 'int32', []);
  }
  if (attention === 'hybrid') attentionInputs.useGqa = g.input('use_gqa', 'bool', []);
  if (cacheIo === 'resident') emitResidentPast(g, config, cacheType);
  else {
    for (let layer = 0; layer < config.layerCount; layer++) {
      for (const kind of ['key', 'value']) g.input(`past_${kind}.${layer}`, cacheType, ['batch', keyValueHeadCount, 'past_slots', headDim]);
    }
  }
  if (attention !== 'fused') attentionInputs.probabilitySplit = emitProbabilitySplit(ctx, 'past_key.0', inputIds);

  const embeddingTable = await source.readFloat32('model.embed_tokens.weight'); // [vocabSize, hiddenSize]
  let residual = emitEmbedding(ctx, 'model.embed_tokens.weight', embeddingTable, vocabSize, hiddenSize, inputIds); // [batch, sequence, hiddenSize]
  onLayer?.(0, config.layerCount + 1);
  let pending: string | null = null; // sublayer output not yet added to the residual stream
  const norm = (name: string, weight: Float32Array): string => {
    const gamma = emitVector(ctx, name, weight, [hiddenSize]);
    if (pending === null) return g.op('SimplifiedLayerNormalization', [residual, gamma], { axis: { i: -1 }, epsilon: { f: rmsNormEps } });
    const [normed, , , sum] = g.node(
      'SkipSimplifiedLayerNormalization',
      [pending, residual, gamma],
      { epsilon: { f: rmsNormEps } },
      {
        domain: 'com.microsoft',
        outputs: 4,
      },
    );
    residual = sum;
    return normed;
  };

  for (let layer = 0; layer < config.layerCount; layer++) {
    const prefix = `model.layers.${layer}`;
    const attentionIn = norm(`${prefix}.input_layernorm.weight`, await source.readFloat32(`${prefix}.input_layernorm.weight`));
    const qkvWeight = await concatWeights(
      source,
      ['q', 'k', 'v'].map((p) => `${prefix}.self_attn.${p}_proj.weight`),
    );
    const qkvWidth = (queryHeadCount + 2 * keyValueHeadCount) * headDim;
    const qkv = emitLinear(ctx, attentionIn, `${prefix}.self_attn.qkv_proj`, qkvWeight, qkvWidth, hiddenSize);
    const context = emitAttention(ctx, attention, layer, qkv, attentionInputs);
    const oWeight = await source.readFloat32(`${prefix}.self_attn.o_proj.weight`);
    pending = emitLinear(ctx, context, `${prefix}.self_attn.o_proj`, oWeight, hiddenSize, queryHeadCount * headDim);

    const mlpIn = norm(`${prefix}.post_attention_layernorm.weight`, await source.readFloat32(`${prefix}.post_attention_layernorm.weight`));
    const gateUpWeight = await concatWeights(
      source,
      ['gate', 'up'].map((p) => `${prefix}.mlp.${p}_proj.weight`),
    );
    const gateUp = emitLinear(ctx, mlpIn, `${prefix}.mlp.gate_up_proj`, gateUpWeight, 2 * intermediateSize, hiddenSize);
    const [gate, up] = g.node('Split', [gateUp, g.int64([intermediateSize, intermediateSize])], { axis: { i: -1 } }, { outputs: 2 });
    const activated = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]); // SwiGLU: silu(gate) * up
    const downWeight = await source.readFloat32(`${prefix}.mlp.down_proj.weight`);
    pending = emitLinear(ctx, activated, `${prefix}.mlp.down_proj`, downWeight, hiddenSize, intermediateSize);
    onLayer?.(layer + 1, config.layerCount + 1);
  }

  // Only the rows the caller needs reach the final norm and the LM head.
  const flat = g.op('Reshape', [g.op('Add', [pending!, residual]), g.int64([-1, hiddenSize])]); // [batch * sequence, hiddenSize]
  const selected = g.op('Gather', [flat, logitsIndex], { axis: { i: 0 } }); // [rows, hiddenSize]
  const finalGamma = emitVector(ctx, 'model.norm.weight', await source.readFloat32('model.norm.weight'), [hiddenSize]);
  const normed = g.op('SimplifiedLayerNormalization', [selected, finalGamma], { axis: { i: -1 }, epsilon: { f: rmsNormEps } });
  const headName = config.tieWordEmbeddings || !source.has('lm_head.weight') ? 'model.embed_tokens.weight' : 'lm_head.weight';
  const logits = emitLinear(ctx, normed, 'lm_head', await source.readFloat32(headName), vocabSize, hiddenSize);
  onLayer?.(config.layerCount + 1, config.layerCount + 1);
  g.nodes.push({
    opType: computeType === 'float32' ? 'Identity' : 'Cast',
    name: 'logits',
    inputs: [logits],
    outputs: ['logits'],
    attributes: computeType === 'float32' ? {} : { to: { i: 1 } },
  });
  g.output('logits', 'float32', ['rows', vocabSize]);
  if (cacheIo === 'resident') emitResidentPresent(g, config, cacheType);
  else
    for (let layer = 0; layer < config.layerCount; layer++) {
      for (const kind of ['key', 'value'] as const) {
        if (cacheIo === 'shared-buffer') g.output(presentOutputName(kind, layer), cacheType, ['batch', keyValueHeadCount, 'past_slots', headDim]);
        else g.output(`new_${kind}.${layer}`, cacheType, ['batch', 'sequence', keyValueHeadCount * headDim]);
      }
    }
  return { model: g.build(GRAPH_BUILDER_VERSION), attention, computeType, cacheType };
}
