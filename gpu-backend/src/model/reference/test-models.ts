// Test support: tiny Mistral configs and an in-memory weight source (random weights: default-model's
// randomModelWeights), so engine tests need no disk and no checkpoint.

import type { ModelConfig } from '../checkpoint/config';
import type { WeightSource } from '../graph/model-graph';

/** Mistral-7B-v0.1's published config.json (values from the paper's Table 1 and the released file). */
export const MISTRAL_7B_V01_JSON = {
  architectures: ['MistralForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mistral',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4096,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  vocab_size: 32000,
};

export function tinyConfig(overrides: Partial<ModelConfig> = {}): ModelConfig {
  return {
    architecture: 'MistralForCausalLM',
    vocabSize: 64,
    hiddenSize: 32,
    intermediateSize: 48,
    layerCount: 2,
    queryHeadCount: 4,
    keyValueHeadCount: 2,
    headDim: 16,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    maxPositions: 256,
    slidingWindow: null,
    bosTokenId: 1,
    eosTokenId: 2,
    tieWordEmbeddings: false,
    ...overrides,
  };
}

export class MapWeightSource implements WeightSource {
  constructor(
    readonly config: ModelConfig,
    private readonly weights: Map<string, Float32Array>,
  ) {}

  readFloat32(name: string): Float32Array {
    const tensor = this.weights.get(name);
    if (!tensor) throw new Error(`no weight ${name}`);
    return tensor;
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }
}

/** max |actual - expected| / max |expected| over one logits row: the accuracy measure of tests and the device check. */
export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxDiff / maxRef;
}
