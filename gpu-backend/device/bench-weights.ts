// Random weights for the device check's speed models, made fast enough for a 7B shape on the device:
// one block of seeded normals is tiled (with a per-tensor offset) instead of drawing every value.
// Speed runs only: the values are not independent, so no accuracy claim rests on them.

import { configFromHuggingFace, type ModelConfig } from '../src/model/checkpoint/config';
import { mistralTensors } from '../src/model/checkpoint/mistral-tensors';
import type { WeightSource } from '../src/model/graph/model-graph';
import { SeededRandom } from '../src/model/checkpoint/seeded-random';

const BLOCK_VALUES = 1 << 20;

/** Mistral-shaped benchmark configs (Hugging Face names go through the one mapping function). */
export function benchConfig(shape: '125m' | '7b' | 'tiny', layerCount: number, maxPositions: number): ModelConfig {
  const common = { architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_act: 'silu', vocab_size: 32000, rope_theta: 10000, rms_norm_eps: 1e-5 };
  const shapes = {
    tiny: { hidden_size: 256, intermediate_size: 512, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 32, sliding_window: 4096 },
    '125m': { hidden_size: 768, intermediate_size: 2048, num_attention_heads: 12, num_key_value_heads: 4, head_dim: 64, sliding_window: 4096 },
    '7b': { hidden_size: 4096, intermediate_size: 14336, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128, sliding_window: 4096 },
  } as const;
  return configFromHuggingFace({ ...common, ...shapes[shape], num_hidden_layers: layerCount, max_position_embeddings: maxPositions });
}

export class TiledRandomWeights implements WeightSource {
  private readonly block: Float32Array;
  private readonly shapes: Map<string, { shape: number[]; kind: string }>;
  private readonly scaledBlocks = new Map<number, Float32Array>();

  constructor(
    readonly config: ModelConfig,
    seed: number,
  ) {
    const random = new SeededRandom(seed);
    this.block = new Float32Array(BLOCK_VALUES);
    for (let i = 0; i < BLOCK_VALUES; i++) this.block[i] = random.nextNormal();
    this.shapes = new Map(mistralTensors(config).map((spec) => [spec.name, spec]));
  }

  has(name: string): boolean {
    return this.shapes.has(name);
  }

  readFloat32(name: string): Float32Array {
    const spec = this.shapes.get(name);
    if (!spec) throw new Error(`no weight ${name}`);
    const size = spec.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(size);
    if (spec.kind === 'norm') return out.fill(1);
    const block = this.scaledBlock(spec.kind === 'projection' ? 1 / Math.sqrt(spec.shape[1]) : 1);
    // A different start per tensor so tensors differ; the tile is copied (memcpy speed, no per-value work).
    let offset = (name.length * 7919) % BLOCK_VALUES;
    for (let done = 0; done < size; ) {
      const count = Math.min(size - done, BLOCK_VALUES - offset);
      out.set(block.subarray(offset, offset + count), done);
      done += count;
      offset = 0;
    }
    return out;
  }

  /** The normal block times `scale`, made once per distinct fan-in. */
  private scaledBlock(scale: number): Float32Array {
    let block = this.scaledBlocks.get(scale);
    if (!block) {
      block = this.block.map((value) => value * scale);
      this.scaledBlocks.set(scale, block);
    }
    return block;
  }
}
