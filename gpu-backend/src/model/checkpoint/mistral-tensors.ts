// The tensors a Mistral (Llama-layout) checkpoint must hold, with the shapes its config implies.
// Used to validate checkpoints at open and to lay out generated random models in the same order.

import type { ModelConfig } from './config';

export interface TensorSpec {
  name: string;
  shape: number[];
  /** What the tensor is: generators pick an initial scale by it (projections scale by their fan-in, shape[1]). */
  kind: 'embedding' | 'norm' | 'projection';
}

export function mistralTensors(config: ModelConfig): TensorSpec[] {
  const { vocabSize, hiddenSize, intermediateSize, queryHeadCount, keyValueHeadCount, headDim } = config;
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [vocabSize, hiddenSize], kind: 'embedding' }];
  for (let layer = 0; layer < config.layerCount; layer++) {
    const prefix = `model.layers.${layer}`;
    specs.push(
      { name: `${prefix}.input_layernorm.weight`, shape: [hiddenSize], kind: 'norm' },
      { name: `${prefix}.self_attn.q_proj.weight`, shape: [queryHeadCount * headDim, hiddenSize], kind: 'projection' },
      { name: `${prefix}.self_attn.k_proj.weight`, shape: [keyValueHeadCount * headDim, hiddenSize], kind: 'projection' },
      { name: `${prefix}.self_attn.v_proj.weight`, shape: [keyValueHeadCount * headDim, hiddenSize], kind: 'projection' },
      { name: `${prefix}.self_attn.o_proj.weight`, shape: [hiddenSize, queryHeadCount * headDim], kind: 'projection' },
      { name: `${prefix}.post_attention_layernorm.weight`, shape: [hiddenSize], kind: 'norm' },
      { name: `${prefix}.mlp.gate_proj.weight`, shape: [intermediateSize, hiddenSize], kind: 'projection' },
      { name: `${prefix}.mlp.up_proj.weight`, shape: [intermediateSize, hiddenSize], kind: 'projection' },
      { name: `${prefix}.mlp.down_proj.weight`, shape: [hiddenSize, intermediateSize], kind: 'projection' },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [hiddenSize], kind: 'norm' });
  if (!config.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [vocabSize, hiddenSize], kind: 'projection' });
  return specs;
}
