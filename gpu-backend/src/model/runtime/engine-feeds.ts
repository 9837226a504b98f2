// Builds the session.run feeds for one batch of rows: token and position ids, the rows whose logits are
// wanted, the attention bookkeeping (GQA seqlens, the in-place path's additive mask, the hybrid switch) and cache views.

import type { ModelConfig } from '../checkpoint/config';
import type { AttentionKind } from '../graph/graph-attention';
import type { CacheArray, KvCache } from './kv-cache';
import type { Feed, FeedType } from './ort-session';

/** One batch entry: a sequence and its S new tokens, or a filler row (decode batches are row ranges). */
export interface BatchRow {
  sequenceId: number | null;
  tokenIds: number[];
}

export interface BatchPlan {
  rows: BatchRow[];
  sequenceLength: number;
  /** Decode: the batch is the cache rows [firstRow, firstRow + rows.length) fed as views. */
  firstRow: number;
  /** Prefill (one row): feed the past oldest-first (fused path, wrapped ring). */
  timeOrdered: boolean;
  /** Logits for every new token of every row, not just the last (prompt scoring). */
  allLogits?: boolean;
  /** Hybrid graphs: run the GroupQueryAttention branch (prefill chunks) instead of the in-place one. */
  useGqa: boolean;
}

const MASKED = -1e30; // exp underflows to exactly 0 in fp32 (and to -inf after the fp16 cast)

export function buildFeeds(config: ModelConfig, attention: AttentionKind, cache: KvCache, plan: BatchPlan): Record<string, Feed> {
  const { rows, sequenceLength: S } = plan;
  const B = rows.length;
  const lengths = rows.map((row) => (row.sequenceId === null ? 0 : cache.length(row.sequenceId)));
  const inputIds = new BigInt64Array(B * S);
  const positionIds = new BigInt64Array(B * S);
  const logitsRows: bigint[] = [];
  rows.forEach((row, b) => {
    for (let s = 0; s < S; s++) {
      inputIds[b * S + s] = BigInt(row.sequenceId === null ? 0 : row.tokenIds[s]);
      positionIds[b * S + s] = BigInt(lengths[b] + s);
    }
    if (row.sequenceId === null) return;
    if (plan.allLogits) for (let s = 0; s < S; s++) logitsRows.push(BigInt(b * S + s));
    else logitsRows.push(BigInt(b * S + S - 1));
  });
  const feeds: Record<string, Feed> = {
    input_ids: { type: 'int64', data: inputIds, dims: [B, S] },
    position_ids: { type: 'int64', data: positionIds, dims: [B, S] },
    logits_index: { type: 'int64', data: BigInt64Array.from(logitsRows), dims: [logitsRows.length] },
  };

  const cacheType: FeedType = cache.options.elementType;
  const { keyValueHeadCount, headDim } = config;
  let pastSlots = cache.capacity;
  // GQA masks by cache index: a prefill chunk (S > 1) over a wrapped ring needs its past oldest-first.
  const gqaReads = attention === 'fused' || (attention === 'hybrid' && plan.useGqa);
  const timeOrdered = plan.timeOrdered || (gqaReads && S > 1 && B === 1 && rows[0].sequenceId !== null && cache.isWrapped(lengths[0]));
  const pastOf = (array: CacheArray): CacheArray => {
    if (timeOrdered) {
      const ordered = cache.timeOrderedPast(rows[0].sequenceId!, array);
      pastSlots = ordered.slots;
      return ordered.data;
    }
    return cache.rowsView(array, plan.firstRow, B);
  };
  for (let layer = 0; layer < config.layerCount; layer++) {
    const pastKey = pastOf(cache.keys[layer]);
    const pastValue = pastOf(cache.values[layer]);
    feeds[`past_key.${layer}`] = { type: cacheType, data: pastKey, dims: [B, keyValueHeadCount, pastSlots, headDim] };
    feeds[`past_value.${layer}`] = { type: cacheType, data: pastValue, dims: [B, keyValueHeadCount, pastSlots, headDim] };
  }

  const groupSize = config.queryHeadCount / keyValueHeadCount;
  if (attention !== 'unfused') {
    // GQA: seqlens_k = valid past + S - 1 per row; total_sequence_length = the batch maximum + 1.
    const seqlens = Int32Array.from(lengths, (length) => cache.validSlots(length) + S - 1);
    feeds.seqlens_k = { type: 'int32', data: seqlens, dims: [B] };
    feeds.total_sequence_length = { type: 'int32', data: Int32Array.of(Math.max(...seqlens) + 1), dims: [] };
  }
  if (attention === 'hybrid') feeds.use_gqa = { type: 'bool', data: Uint8Array.of(gqaReads ? 1 : 0), dims: [] };
  if (attention !== 'fused') {
    // A hybrid graph's GQA branch ignores the mask, but it is still a graph input: a 1-element stand-in.
    feeds.attention_bias = gqaReads
      ? { type: 'float32', data: new Float32Array(1), dims: [1, 1, 1, 1, 1] }
      : { type: 'float32', data: inPlaceMask(config, cache, lengths, S, pastSlots), dims: [B, 1, groupSize, S, pastSlots + S] };
  }
  return feeds;
}

/**
 * Additive mask [batch, 1, groupSize, S, pastSlots + S] for the in-place attention path, rows ordered
 * (group, query) as the graph groups query heads. Column j < pastSlots is cache slot j (holding the
 * position the ring arithmetic says, or nothing); column pastSlots + t is new token t.
 */
function inPlaceMask(config: ModelConfig, cache: KvCache, lengths: number[], S: number, pastSlots: number): Float32Array {
  const groupSize = config.queryHeadCount / config.keyValueHeadCount;
  const window = config.slidingWindow ?? Number.POSITIVE_INFINITY;
  const keys = pastSlots + S;
  const mask = new Float32Array(lengths.length * groupSize * S * keys).fill(MASKED);
  lengths.forEach((length, b) => {
    const slotPositions = Array.from({ length: pastSlots }, (_, slot) => cache.positionInSlot(length, slot));
    for (let s = 0; s < S; s++) {
      const query = length + s;
      const row = new Float32Array(keys).fill(MASKED);
      slotPositions.forEach((position, slot) => {
        if (position >= 0 && query - position < window) row[slot] = 0;
      });
      for (let t = 0; t <= s; t++) if (s - t < window) row[pastSlots + t] = 0;
      for (let group = 0; group < groupSize; group++) mask.set(row, ((b * groupSize + group) * S + s) * keys);
    }
  });
  return mask;
}
