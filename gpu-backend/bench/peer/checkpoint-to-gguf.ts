// Converts a Mistral checkpoint folder (the one the engine serves) into a llama-architecture GGUF, so the
// peer benchmark runs llama.cpp on the very same weights: F32, F16, Q8_0 or Q4_0 linear layers, F32 norms.

import { readFile } from 'node:fs/promises';
import { Checkpoint } from '../../src/model/checkpoint/checkpoint';
import type { ModelConfig } from '../../src/model/checkpoint/config';
import { type GgmlType, type GgufMetadataValue, type GgufTensor, writeGguf } from './gguf-writer';

export type GgufFormat = 'F32' | 'F16' | 'Q8_0' | 'Q4_0';

/** general.file_type (llama_ftype): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7. */
const FILE_TYPE: Record<GgufFormat, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

export interface Vocabulary {
  tokens: string[];
  scores: Float32Array;
  /** SentencePiece piece types, which GGUF's token_type reuses: 1 normal, 2 unknown, 3 control, 6 byte. */
  types: Int32Array;
}

/** The pieces of a SentencePiece ModelProto (field 1: repeated SentencePiece {1 piece, 2 score, 3 type}). */
export function readSentencePieceVocabulary(bytes: Uint8Array): Vocabulary {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const varint = (state: { at: number }): number => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = bytes[state.at++];
      value += (byte & 0x7f) * scale;
      scale *= 128;
      if (!(byte & 0x80)) return value;
    }
  };
  /** Calls `onField` for each field in [start, end); skips varint/fixed64/fixed32/length-delimited. */
  const fields = (start: number, end: number, onField: (field: number, wire: number, at: number, length: number) => void) => {
    const state = { at: start };
    while (state.at < end) {
      const tag = varint(state);
      const wire = tag & 7;
      const at = state.at;
      if (wire === 0) varint(state);
      else if (wire === 1) state.at += 8;
      else if (wire === 5) state.at += 4;
      else if (wire === 2) {
        const length = varint(state);
        onField(Math.floor(tag / 8), wire, state.at, length);
        state.at += length;
        continue;
      } else throw new Error(`sentencepiece model: unsupported wire type ${wire}`);
      onField(Math.floor(tag / 8), wire, at, state.at - at);
    }
  };
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  fields(0, bytes.length, (field, wire, at, length) => {
    if (field !== 1 || wire !== 2) return;
    let piece = '';
    let score = 0;
    let type = 1;
    fields(at, at + length, (inner, innerWire, innerAt, innerLength) => {
      if (inner === 1) piece = utf8.decode(bytes.subarray(innerAt, innerAt + innerLength));
      else if (inner === 2 && innerWire === 5) score = view.getFloat32(innerAt, true);
      else if (inner === 3 && innerWire === 0) type = varint({ at: innerAt });
    });
    tokens.push(piece);
    scores.push(score);
    types.push(type);
  });
  return { tokens, scores: Float32Array.from(scores), types: Int32Array.from(types) };
}

/**
 * Hugging Face q/k rows are laid out for rotate_half (dimension i pairs with i + headDim/2); llama.cpp's
 * llama rope pairs 2j with 2j + 1. Row (head, t, j) moves to (head, j, t), as llama.cpp's converter does.
 */
export function permuteForInterleavedRope(weight: Float32Array, headCount: number, headDim: number, inFeatures: number): Float32Array {
  const out = new Float32Array(weight.length);
  const half = headDim / 2;
  for (let head = 0; head < headCount; head++) {
    for (let t = 0; t < 2; t++) {
      for (let j = 0; j < half; j++) {
        const from = (head * headDim + t * half + j) * inFeatures;
        const to = (head * headDim + 2 * j + t) * inFeatures;
        out.set(weight.subarray(from, from + inFeatures), to);
      }
    }
  }
  return out;
}

function metadataFor(config: ModelConfig, format: GgufFormat, name: string, vocabulary: Vocabulary): Record<string, GgufMetadataValue> {
  const u32 = (value: number) => ({ type: 'u32', value }) as const;
  return {
    'general.architecture': { type: 'string', value: 'llama' },
    'general.name': { type: 'string', value: name },
    'general.alignment': u32(32),
    'general.file_type': u32(FILE_TYPE[format]),
    'llama.vocab_size': u32(config.vocabSize),
    'llama.context_length': u32(config.maxPositions),
    'llama.embedding_length': u32(config.hiddenSize),
    'llama.block_count': u32(config.layerCount),
    'llama.feed_forward_length': u32(config.intermediateSize),
    'llama.rope.dimension_count': u32(config.headDim),
    'llama.rope.freq_base': { type: 'f32', value: config.ropeTheta },
    'llama.attention.head_count': u32(config.queryHeadCount),
    'llama.attention.head_count_kv': u32(config.keyValueHeadCount),
    'llama.attention.key_length': u32(config.headDim),
    'llama.attention.value_length': u32(config.headDim),
    'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: config.rmsNormEps },
    'tokenizer.ggml.model': { type: 'string', value: 'llama' },
    'tokenizer.ggml.tokens': { type: 'string[]', value: vocabulary.tokens },
    'tokenizer.ggml.scores': { type: 'f32[]', value: vocabulary.scores },
    'tokenizer.ggml.token_type': { type: 'i32[]', value: vocabulary.types },
    'tokenizer.ggml.bos_token_id': u32(config.bosTokenId),
    'tokenizer.ggml.eos_token_id': u32(config.eosTokenId),
    'tokenizer.ggml.unknown_token_id': u32(0),
    'tokenizer.ggml.add_bos_token': { type: 'bool', value: false },
  };
}

/** Writes `outPath` from the checkpoint in `modelDir`. The vocabulary comes from a SentencePiece model file. */
export async function checkpointToGguf(modelDir: string, outPath: string, format: GgufFormat, tokenizerModelPath: string): Promise<void> {
  const vocabulary = readSentencePieceVocabulary(await readFile(tokenizerModelPath));
  const checkpoint = await Checkpoint.open(modelDir);
  try {
    const config = checkpoint.config;
    if (vocabulary.tokens.length !== config.vocabSize) {
      throw new Error(`${tokenizerModelPath}: ${vocabulary.tokens.length} pieces, the checkpoint's vocabulary is ${config.vocabSize}`);
    }
    const linear: GgmlType = format;
    const hf = (name: string) => () => checkpoint.readFloat32(name);
    const { hiddenSize, intermediateSize, queryHeadCount, keyValueHeadCount, headDim, vocabSize } = config;
    const tensors: GgufTensor[] = [{ name: 'token_embd.weight', dims: [hiddenSize, vocabSize], type: linear, data: hf('model.embed_tokens.weight') }];
    for (let layer = 0; layer < config.layerCount; layer++) {
      const from = `model.layers.${layer}`;
      const to = `blk.${layer}`;
      tensors.push(
        { name: `${to}.attn_norm.weight`, dims: [hiddenSize], type: 'F32', data: hf(`${from}.input_layernorm.weight`) },
        {
          name: `${to}.attn_q.weight`,
          dims: [hiddenSize, queryHeadCount * headDim],
          type: linear,
          data: async () => permuteForInterleavedRope(await checkpoint.readFloat32(`${from}.self_attn.q_proj.weight`), queryHeadCount, headDim, hiddenSize),
        },
        {
          name: `${to}.attn_k.weight`,
          dims: [hiddenSize, keyValueHeadCount * headDim],
          type: linear,
          data: async () => permuteForInterleavedRope(await checkpoint.readFloat32(`${from}.self_attn.k_proj.weight`), keyValueHeadCount, headDim, hiddenSize),
        },
        { name: `${to}.attn_v.weight`, dims: [hiddenSize, keyValueHeadCount * headDim], type: linear, data: hf(`${from}.self_attn.v_proj.weight`) },
        { name: `${to}.attn_output.weight`, dims: [queryHeadCount * headDim, hiddenSize], type: linear, data: hf(`${from}.self_attn.o_proj.weight`) },
        { name: `${to}.ffn_norm.weight`, dims: [hiddenSize], type: 'F32', data: hf(`${from}.post_attention_layernorm.weight`) },
        { name: `${to}.ffn_gate.weight`, dims: [hiddenSize, intermediateSize], type: linear, data: hf(`${from}.mlp.gate_proj.weight`) },
        { name: `${to}.ffn_up.weight`, dims: [hiddenSize, intermediateSize], type: linear, data: hf(`${from}.mlp.up_proj.weight`) },
        { name: `${to}.ffn_down.weight`, dims: [intermediateSize, hiddenSize], type: linear, data: hf(`${from}.mlp.down_proj.weight`) },
      );
    }
    tensors.push({ name: 'output_norm.weight', dims: [hiddenSize], type: 'F32', data: hf('model.norm.weight') });
    tensors.push({ name: 'output.weight', dims: [hiddenSize, vocabSize], type: linear, data: hf(checkpoint.outputWeightName()) });
    await writeGguf(outPath, metadataFor(config, format, `mistral-edge-serve ${modelDir}`, vocabulary), tensors);
  } finally {
    await checkpoint.close();
  }
}
