// Test support: tiny random Mistral configs and in-memory weight sources (no disk, no checkpoint).

import type { ModelConfig } from './config';
import { mistralTensors } from './mistral-tensors';
import type { WeightSource } from './model-graph';
import { SeededRandom, hashSeed } from './seeded-random';

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

/** Normal weights scaled by 1/sqrt(fan-in) (norm weights around 1), one seeded stream per tensor. */
export function randomWeights(config: ModelConfig, seed: number): Map<string, Float32Array> {
  const weights = new Map<string, Float32Array>();
  for (const spec of mistralTensors(config)) {
    const random = new SeededRandom(hashSeed(seed, spec.name));
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    const scale = spec.kind === 'projection' ? 1 / Math.sqrt(spec.shape[1]) : spec.kind === 'embedding' ? 1 : 0.1;
    for (let i = 0; i < size; i++) values[i] = (spec.kind === 'norm' ? 1 : 0) + scale * random.nextNormal();
    weights.set(spec.name, values);
  }
  return weights;
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
