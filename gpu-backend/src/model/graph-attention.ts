// Attention subgraphs. Rotary runs outside the attention op (com.microsoft.RotaryEmbedding with
// explicit position_ids) so rotary positions are independent of cache indices (rolling buffer) and the
// rotated new keys can be graph outputs: the engine copies only those few rows out per step, never
// whole caches (session.run copies every fetched output).
//   fused:   com.microsoft.GroupQueryAttention, do_rotary=0, local_window_size = W or -1.
//   unfused: explicit MatMul/Softmax with an additive mask the engine computes from slot positions;
//            picked automatically when headDim % 16 != 0 (the GQA CPU kernel's head-size rule).

import type { GraphContext } from './graph-linear';
import { emitVector } from './graph-linear';

export type AttentionKind = 'fused' | 'unfused';

export function chooseAttention(headDim: number): AttentionKind {
  return headDim % 16 === 0 ? 'fused' : 'unfused';
}

/** Graph inputs shared by all layers. */
export interface AttentionInputs {
  positionIds: string; // [batch, sequence] int64
  cosCache: string; // [maxPositions, headDim / 2]
  sinCache: string; // [maxPositions, headDim / 2]
  seqlensK?: string; // [batch] int32, fused only
  totalSequenceLength?: string; // [] int32, fused only
  attentionBias?: string; // [batch, 1, groupedQueries, pastSlots + sequence] compute type, unfused only
}

/** cos/sin caches [maxPositions, headDim / 2] for rotate-half rotary (rotary_interleaved = 0). */
export function emitRotaryCaches(ctx: GraphContext): { cosCache: string; sinCache: string } {
  const { headDim, ropeTheta, maxPositions } = ctx.config;
  const half = headDim / 2;
  const cos = new Float32Array(maxPositions * half);
  const sin = new Float32Array(maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.pow(ropeTheta, (-2 * i) / headDim);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return {
    cosCache: emitVector(ctx, 'rotary.cos_cache', cos, [maxPositions, half]),
    sinCache: emitVector(ctx, 'rotary.sin_cache', sin, [maxPositions, half]),
  };
}

/**
 * qkv [batch, sequence, (queryHeads + 2 * kvHeads) * headDim] -> [batch, sequence, queryHeads * headDim].
 * Writes graph outputs `new_key.L` / `new_value.L` [batch, sequence, kvHeads * headDim] (rotated keys).
 */
export function emitAttention(ctx: GraphContext, kind: AttentionKind, layer: number, qkv: string, inputs: AttentionInputs): string {
  const { g, config } = ctx;
  const { queryHeadCount, keyValueHeadCount, headDim } = config;
  const queryWidth = queryHeadCount * headDim;
  const kvWidth = keyValueHeadCount * headDim;
  const [query, key, value] = g.node('Split', [qkv, g.int64([queryWidth, kvWidth, kvWidth])], { axis: { i: -1 } }, {
    outputs: [`l${layer}.q`, `l${layer}.k`, `new_value.${layer}`],
  });
  const rotary = (input: string, heads: number, output: string) =>
    g.node('RotaryEmbedding', [input, inputs.positionIds, inputs.cosCache, inputs.sinCache], { interleaved: { i: 0 }, num_heads: { i: heads } }, {
      domain: 'com.microsoft',
      outputs: [output],
    })[0];
  const rotatedQuery = rotary(query, queryHeadCount, `l${layer}.q_rot`);
  const rotatedKey = rotary(key, keyValueHeadCount, `new_key.${layer}`);
  const pastKey = `past_key.${layer}`; // [batch, kvHeads, pastSlots, headDim]
  const pastValue = `past_value.${layer}`;
  if (kind === 'fused') {
    const attributes = {
      num_heads: { i: queryHeadCount },
      kv_num_heads: { i: keyValueHeadCount },
      local_window_size: { i: config.slidingWindow ?? -1 },
      do_rotary: { i: 0 },
      scale: { f: 1 / Math.sqrt(headDim) },
    };
    const gqaInputs = [rotatedQuery, rotatedKey, value, pastKey, pastValue, inputs.seqlensK!, inputs.totalSequenceLength!];
    // present_key/value are not graph outputs: fetching them would copy whole caches every step.
    return g.node('GroupQueryAttention', gqaInputs, attributes, { domain: 'com.microsoft', outputs: 3 })[0];
  }
  return emitUnfusedAttention(ctx, layer, rotatedQuery, rotatedKey, value, pastKey, pastValue, inputs.attentionBias!);
}

function emitUnfusedAttention(
  ctx: GraphContext,
  layer: number,
  query: string,
  key: string,
  value: string,
  pastKey: string,
  pastValue: string,
  attentionBias: string,
): string {
  const { g, config } = ctx;
  const { queryHeadCount, keyValueHeadCount, headDim } = config;
  const groupSize = queryHeadCount / keyValueHeadCount;
  // Query head h uses kv head floor(h / groupSize) (HF repeat_kv): group the G query heads of one kv
  // head together so one batched MatMul per kv head covers them: [batch, kvHeads, G * sequence, headDim].
  const scale = emitVector(ctx, `l${layer}.attention.scale`, Float32Array.of(1 / Math.sqrt(headDim)), []);
  const scaledQuery = g.op('Mul', [query, scale]);
  const query5 = g.op('Reshape', [scaledQuery, g.int64([0, 0, keyValueHeadCount, groupSize, headDim])]);
  const queryGrouped = g.op('Reshape', [g.op('Transpose', [query5], { perm: { ints: [0, 2, 3, 1, 4] } }), g.int64([0, 0, -1, headDim])]);
  const key4 = g.op('Reshape', [key, g.int64([0, 0, keyValueHeadCount, headDim])]);
  const value4 = g.op('Reshape', [value, g.int64([0, 0, keyValueHeadCount, headDim])]);
  const keyNew = g.op('Transpose', [key4], { perm: { ints: [0, 2, 1, 3] } }); // [batch, kvHeads, sequence, headDim]
  const valueNew = g.op('Transpose', [value4], { perm: { ints: [0, 2, 1, 3] } });
  const keys = g.op('Concat', [pastKey, keyNew], { axis: { i: 2 } }); // [batch, kvHeads, pastSlots + sequence, headDim]
  const values = g.op('Concat', [pastValue, valueNew], { axis: { i: 2 } });
  const keysT = g.op('Transpose', [keys], { perm: { ints: [0, 1, 3, 2] } });
  const scores = g.op('Add', [g.op('MatMul', [queryGrouped, keysT]), attentionBias]); // [batch, kvHeads, G * sequence, keys]
  const probabilities = g.op('Softmax', [scores], { axis: { i: -1 } });
  const context = g.op('MatMul', [probabilities, values]); // [batch, kvHeads, G * sequence, headDim]
  const context5 = g.op('Reshape', [context, g.int64([0, 0, groupSize, -1, headDim])]);
  const perSequence = g.op('Transpose', [context5], { perm: { ints: [0, 3, 1, 2, 4] } }); // [batch, sequence, kvHeads, G, headDim]
  return g.op('Reshape', [perSequence, g.int64([0, 0, -1])]);
}
