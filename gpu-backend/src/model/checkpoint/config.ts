// Model dimensions in the project's own names; Hugging Face config.json keys are mapped in exactly one function.

import { readFileSync } from 'node:fs';
import path from 'node:path';

export interface ModelConfig {
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layerCount: number;
  queryHeadCount: number;
  keyValueHeadCount: number;
  headDim: number;
  ropeTheta: number;
  rmsNormEps: number;
  /** max_position_embeddings: the longest position the rotary caches cover. */
  maxPositions: number;
  /** Keys visible to a query (i - W < j <= i); null means full causal attention. */
  slidingWindow: number | null;
  bosTokenId: number;
  eosTokenId: number;
  tieWordEmbeddings: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const SUPPORTED_ARCHITECTURES = new Set(['MistralForCausalLM', 'LlamaForCausalLM']);

function positiveInt(json: Record<string, unknown>, key: string, fallback?: number): number {
  const value = json[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new ConfigError(`config.json: "${key}" must be a positive integer, got ${JSON.stringify(json[key])}`);
  }
  return value;
}

function positiveNumber(json: Record<string, unknown>, key: string, fallback: number): number {
  const value = json[key] ?? fallback;
  if (typeof value !== 'number' || !(value > 0)) {
    throw new ConfigError(`config.json: "${key}" must be a positive number, got ${JSON.stringify(json[key])}`);
  }
  return value;
}

/** eos_token_id may be a list in newer configs; the first entry is the model's own end-of-sequence id. */
function firstTokenId(value: unknown, fallback: number): number {
  const first = Array.isArray(value) ? value[0] : value;
  return typeof first === 'number' && Number.isInteger(first) && first >= 0 ? first : fallback;
}

/** The one place Hugging Face names become ours. Throws ConfigError naming the key at fault. */
export function configFromHuggingFace(json: unknown): ModelConfig {
  if (typeof json !== 'object' || json === null) throw new ConfigError('config.json: expected a JSON object');
  const hf = json as Record<string, unknown>;
  const architectures = hf.architectures;
  const architecture = Array.isArray(architectures) && typeof architectures[0] === 'string' ? architectures[0] : 'MistralForCausalLM';
  if (!SUPPORTED_ARCHITECTURES.has(architecture)) {
    throw new ConfigError(`config.json: architecture "${architecture}" is not supported (expected MistralForCausalLM)`);
  }
  const hiddenSize = positiveInt(hf, 'hidden_size');
  const queryHeadCount = positiveInt(hf, 'num_attention_heads');
  const keyValueHeadCount = positiveInt(hf, 'num_key_value_heads', queryHeadCount);
  if (queryHeadCount % keyValueHeadCount !== 0) {
    throw new ConfigError(`config.json: "num_attention_heads" (${queryHeadCount}) must be a multiple of "num_key_value_heads" (${keyValueHeadCount})`);
  }
  const headDim = hf.head_dim == null ? hiddenSize / queryHeadCount : positiveInt(hf, 'head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    const source = hf.head_dim == null ? '"hidden_size" / "num_attention_heads"' : '"head_dim"';
    throw new ConfigError(`config.json: head dimension ${headDim} (${source}) must be an even integer`);
  }
  // Features that change the math but are not implemented: refuse them rather than serve wrong logits.
  if (hf.hidden_act != null && hf.hidden_act !== 'silu') {
    throw new ConfigError(`config.json: "hidden_act" ${JSON.stringify(hf.hidden_act)} is not supported (expected "silu")`);
  }
  if (hf.rope_scaling != null) throw new ConfigError('config.json: "rope_scaling" is not supported (expected null)');
  if (hf.attention_bias === true || hf.mlp_bias === true) {
    throw new ConfigError('config.json: "attention_bias"/"mlp_bias" are not supported (expected false)');
  }
  const window = hf.sliding_window;
  if (window != null && (typeof window !== 'number' || !Number.isInteger(window) || window <= 0)) {
    throw new ConfigError(`config.json: "sliding_window" must be null or a positive integer, got ${JSON.stringify(window)}`);
  }
  return {
    architecture,
    vocabSize: positiveInt(hf, 'vocab_size'),
    hiddenSize,
    intermediateSize: positiveInt(hf, 'intermediate_size'),
    layerCount: positiveInt(hf, 'num_hidden_layers'),
    queryHeadCount,
    keyValueHeadCount,
    headDim,
    ropeTheta: positiveNumber(hf, 'rope_theta', 10000),
    rmsNormEps: positiveNumber(hf, 'rms_norm_eps', 1e-6),
    maxPositions: positiveInt(hf, 'max_position_embeddings', 4096),
    slidingWindow: (window as number | null | undefined) ?? null,
    bosTokenId: typeof hf.bos_token_id === 'number' ? hf.bos_token_id : 1,
    eosTokenId: firstTokenId(hf.eos_token_id, 2),
    tieWordEmbeddings: hf.tie_word_embeddings === true,
  };
}

/** A checkpoint folder's config.json, read before its weights (to choose a session, size a KV budget). */
export function readModelConfig(modelDir: string): ModelConfig {
  return configFromHuggingFace(JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')));
}
