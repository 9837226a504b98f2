// Attention subgraphs. Rotary runs outside the attention op (com.microsoft.RotaryEmbedding with
// explicit position_ids) so rotary positions are independent of cache indices (rolling buffer) and the
// rotated new keys can be graph outputs: the engine copies only those few rows out per step, never
// whole caches (session.run copies every fetched output).
//   unfused (in-place): MatMul/Softmax reading the cache where it lies (FusedMatMul transB, scores
//     against cache and new tokens joined, never the keys), with an additive mask the engine computes
//     from slot positions. The only choice when headDim % 16 != 0 (GQA's CPU rule).
//   fused: com.microsoft.GroupQueryAttention (do_rotary=0, local_window_size = W or -1) for everything.
//     On the CPU it copies the valid past into its present buffer every run, so decode slows with
//     context.
//   hybrid (CPU default): an If per layer on `use_gqa`: GQA for prefill chunks, in-place for decode
//     (the If nodes cost a little per step), which slows far less with context; grouping query heads
//     into one GEMM made MLAS pack the cache every step (docs/bench/model-engine.md, "Attention kinds").

import type { ExecutionProvider } from '../runtime/engine-types';
import type { GraphContext } from './graph-linear';
import { emitVector } from './graph-linear';

export type AttentionKind = 'fused' | 'hybrid' | 'unfused';

/**
 * How the cache crosses the graph boundary. 'new-rows': past_key/value.L in, only the new rows out
 * (new_key/value.L; the store writes them back). 'shared-buffer': GroupQueryAttention's present_key/
 * value.L are graph outputs that the caller binds to the same memory as past_key/value.L, so the op
 * writes the new keys in place and nothing is copied (needs a runtime that binds outputs: the native
 * session). The past then spans the cache's full length. 'resident' (WebGPU, resident-kv-graph.ts): the
 * cache stays in tensors [rows, kvHead, slots, headDim] per layer that the graph gathers the past from
 * and returns updated (cache_key/value.L in, present_key/value.L out); no FusedMatMul (no WebGPU kernel).
 */
export type CacheIo = 'new-rows' | 'shared-buffer' | 'resident';

export const presentOutputName = (kind: 'key' | 'value', layer: number): string => `present_${kind}.${layer}`;

/**
 * unfused when GQA's CPU kernel refuses the head size (its rule is for do_rotary=1; with rotary outside,
 * head_dim 8 measured exact on 1.30, but the rule is kept); on the CPU hybrid (decode cost grows less
 * with context); elsewhere fused (WebGPU has no FusedMatMul kernel; on a GPU the past copy is cheap).
 */
export function chooseAttention(headDim: number, executionProvider: ExecutionProvider = 'cpu'): AttentionKind {
  if (headDim % 16 !== 0) return 'unfused';
  return executionProvider === 'cpu' ? 'hybrid' : 'fused';
}

/** Graph inputs (and values computed once from them) shared by all layers. */
export interface AttentionInputs {
  positionIds: string; // [batch, sequence] int64
  /** Element type of past_key/past_value and new_key/new_value; cast to and from the compute type when they differ. */
  cacheType: 'float32' | 'float16';
  cosCache: string; // [maxPositions, headDim / 2]
  sinCache: string; // [maxPositions, headDim / 2]
  seqlensK?: string; // [batch] int32, fused and hybrid
  totalSequenceLength?: string; // [] int32, fused and hybrid
  useGqa?: string; // [] bool, hybrid only: true runs the GQA branch
  attentionBias?: string; // [batch, 1, groupSize, sequence, pastSlots + sequence] compute type, in-place path only
  probabilitySplit?: string; // [2] int64 = [pastSlots, sequence], in-place path only: computed once, not per layer
  /** 'shared-buffer': GQA's present outputs become graph outputs (fused only, cache type = compute type). */
  cacheIo: CacheIo;
}

/** cos/sin caches [maxPositions, headDim / 2] for rotate-half rotary (rotary_interleaved = 0). */
export function emitRotaryCaches(ctx: GraphContext): { cosCache: string; sinCache: string } {
  const { headDim, ropeTheta, maxPositions } = ctx.config;
  const half = headDim / 2;
  const cos = new Float32Array(maxPositions * half);
  const sin = new Float32Array(maxPositions * half);
  for (let p = 0; p < maxPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * ropeTheta ** ((-2 * i) / headDim);
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
  // A cache type other than the compute type (an fp16 cache under fp32 compute): past tensors are cast
  // up once per layer and step, the new keys/values cast down as the graph outputs the engine stores.
  const castsCache = inputs.cacheType !== ctx.computeType;
  const toCompute = { to: { i: ctx.computeType === 'float32' ? 1 : 10 } };
  const toCache = { to: { i: inputs.cacheType === 'float32' ? 1 : 10 } };
  const [query, key, value] = g.node(
    'Split',
    [qkv, g.int64([queryWidth, kvWidth, kvWidth])],
    { axis: { i: -1 } },
    {
      outputs: [`l${layer}.q`, `l${layer}.k`, castsCache ? `l${layer}.v` : `new_value.${layer}`],
    },
  );
  const rotary = (input: string, heads: number, output: string) =>
    g.node(
      'RotaryEmbedding',
      [input, inputs.positionIds, inputs.cosCache, inputs.sinCache],
      { interleaved: { i: 0 }, num_heads: { i: heads } },
      {
        domain: 'com.microsoft',
        outputs: [output],
      },
    )[0];
  const rotatedQuery = rotary(query, queryHeadCount, `l${layer}.q_rot`);
  const rotatedKey = rotary(key, keyValueHeadCount, castsCache ? `l${layer}.k_rot` : `new_key.${layer}`);
  let pastKey = `past_key.${layer}`; // [batch, kvHeads, pastSlots, headDim]
  let pastValue = `past_value.${layer}`;
  if (castsCache) {
    g.node('Cast', [rotatedKey], toCache, { outputs: [`new_key.${layer}`] });
    g.node('Cast', [value], toCache, { outputs: [`new_value.${layer}`] });
    pastKey = g.op('Cast', [pastKey], toCompute);
    pastValue = g.op('Cast', [pastValue], toCompute);
  }
  if (kind !== 'unfused') {
    const attributes = {
      num_heads: { i: queryHeadCount },
      kv_num_heads: { i: keyValueHeadCount },
      local_window_size: { i: config.slidingWindow ?? -1 },
      do_rotary: { i: 0 },
      scale: { f: 1 / Math.sqrt(headDim) },
    };
    const gqaInputs = [rotatedQuery, rotatedKey, value, pastKey, pastValue, inputs.seqlensK!, inputs.totalSequenceLength!];
    if (inputs.cacheIo === 'shared-buffer') {
      const presents = [presentOutputName('key', layer), presentOutputName('value', layer)];
      return g.node('GroupQueryAttention', gqaInputs, attributes, { domain: 'com.microsoft', outputs: [`l${layer}.attention`, ...presents] })[0];
    }
    // present_key/value are not graph outputs: fetching them would copy whole caches every step.
    if (kind === 'fused') return g.node('GroupQueryAttention', gqaInputs, attributes, { domain: 'com.microsoft', outputs: 3 })[0];
    const gqaBranch = g.branch();
    const gqaOutput = gqaBranch.node('GroupQueryAttention', gqaInputs, attributes, { domain: 'com.microsoft', outputs: 3 })[0];
    gqaBranch.output(gqaOutput, ctx.computeType, null);
    const inPlaceBranch = g.branch();
    const inPlaceOutput = emitInPlaceAttention({ ...ctx, g: inPlaceBranch }, layer, rotatedQuery, rotatedKey, value, pastKey, pastValue, inputs);
    inPlaceBranch.output(inPlaceOutput, ctx.computeType, null);
    return g.op('If', [inputs.useGqa!], {
      then_branch: { g: gqaBranch.subgraph(`l${layer}.gqa`) },
      else_branch: { g: inPlaceBranch.subgraph(`l${layer}.in_place`) },
    });
  }
  return emitInPlaceAttention(ctx, layer, rotatedQuery, rotatedKey, value, pastKey, pastValue, inputs);
}

function emitInPlaceAttention(
  ctx: GraphContext,
  layer: number,
  query: string,
  key: string,
  value: string,
  pastKey: string,
  pastValue: string,
  inputs: AttentionInputs,
): string {
  const attentionBias = inputs.attentionBias!;
  const probabilitySplit = inputs.probabilitySplit!;
  const { g, config } = ctx;
  const { queryHeadCount, keyValueHeadCount, headDim } = config;
  const groupSize = queryHeadCount / keyValueHeadCount;
  // Query head h uses kv head floor(h / groupSize) (HF repeat_kv). Queries go 5-D [batch, kvHeads, G,
  // sequence, headDim] against keys/values [batch, kvHeads, 1, slots, headDim]: MatMul broadcasts the
  // cache over the G query heads by offset (no copy), so each product is one query head's own GEMM. At
  // decode (sequence 1) that is M = 1, which MLAS runs with its GEMV kernels straight from the cache;
  // grouping the G heads into M = G rows instead made MLAS pack (copy) the whole cache every step.
  // Every node here runs per layer per step (a few us each at decode), so the new keys/values go 5-D in
  // one Reshape + Transpose. The scale stays a Mul of the query: FusedMatMul's alpha != 1 takes MLAS off
  // its M = 1 path (it then packs B, the whole cache, every step; docs/bench/model-engine.md).
  const scaledQuery = g.op('Mul', [query, emitVector(ctx, `l${layer}.attention.scale`, Float32Array.of(1 / Math.sqrt(headDim)), [])]);
  const query5 = g.op('Reshape', [scaledQuery, g.int64([0, 0, keyValueHeadCount, groupSize, headDim])]);
  const queryGrouped = g.op('Transpose', [query5], { perm: { ints: [0, 2, 3, 1, 4] } }); // [batch, kvHeads, G, sequence, headDim]
  const newPerKvHead = (tensor: string) =>
    g.op('Transpose', [g.op('Reshape', [tensor, g.int64([0, 0, keyValueHeadCount, 1, headDim])])], { perm: { ints: [0, 2, 3, 1, 4] } }); // [batch, kvHeads, 1, sequence, headDim]
  const keyNew = newPerKvHead(key);
  const valueNew = newPerKvHead(value);
  const pastKey5 = g.op('Unsqueeze', [pastKey, g.int64([2])]); // [batch, kvHeads, 1, pastSlots, headDim]
  const pastValue5 = g.op('Unsqueeze', [pastValue, g.int64([2])]);
  // Scores against the cache and against the new tokens separately, so the cache is read in place:
  // no Concat of keys/values (a full cache copy per layer per step); only the small score rows are joined.
  // No fp16 FusedMatMul on the CPU, and none at all on WebGPU, where it would run on the CPU and pull the resident cache across.
  const transposedProduct = (left: string, right: string): string =>
    ctx.computeType === 'float32' && inputs.cacheIo !== 'resident'
      ? g.op('FusedMatMul', [left, right], { transB: { i: 1 } }, 'com.microsoft')
      : g.op('MatMul', [left, g.op('Transpose', [right], { perm: { ints: [0, 1, 2, 4, 3] } })]);
  const pastScores = transposedProduct(queryGrouped, pastKey5); // [batch, kvHeads, G, sequence, pastSlots]
  const newScores = transposedProduct(queryGrouped, keyNew); // [batch, kvHeads, G, sequence, sequence]
  const scores = g.op('Add', [g.op('Concat', [pastScores, newScores], { axis: { i: -1 } }), attentionBias]);
  const probabilities = g.op('Softmax', [scores], { axis: { i: -1 } }); // [batch, kvHeads, G, sequence, pastSlots + sequence]
  const [pastProbabilities, newProbabilities] = g.node('Split', [probabilities, probabilitySplit], { axis: { i: -1 } }, { outputs: 2 });
  const context = g.op('Add', [g.op('MatMul', [pastProbabilities, pastValue5]), g.op('MatMul', [newProbabilities, valueNew])]); // [batch, kvHeads, G, sequence, headDim]
  const perSequence = g.op('Transpose', [context], { perm: { ints: [0, 3, 1, 2, 4] } }); // [batch, sequence, kvHeads, G, headDim]
  return g.op('Reshape', [perSequence, g.int64([0, 0, -1])]);
}

/** [pastSlots, sequence] as int64 [2]: where the in-place path splits its joined score rows. */
export function emitProbabilitySplit(ctx: GraphContext, pastKey: string, inputIds: string): string {
  const { g } = ctx;
  const pastSlots = g.op('Shape', [pastKey], { start: { i: 2 }, end: { i: 3 } });
  const sequence = g.op('Shape', [inputIds], { start: { i: 1 }, end: { i: 2 } });
  return g.op('Concat', [pastSlots, sequence], { axis: { i: 0 } });
}
