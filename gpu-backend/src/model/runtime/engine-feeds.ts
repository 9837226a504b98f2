// Builds the session.run feeds for one batch of rows: token and position ids, the rows whose logits are
// wanted and the attention bookkeeping (GQA seqlens, the in-place path's additive mask, the hybrid
// switch), from the layout (SequenceSlots); the store's past feeds (KvStore.pastFeeds) go in as they are.

import type { ModelConfig } from '../checkpoint/config';
import type { AttentionKind } from '../graph/graph-attention';
import type { CacheFeeds } from './kv-store';
import type { SequenceSlots } from './sequence-slots';

/**
 * One batch entry: a sequence and its new tokens, or a filler row (decode batches are row ranges).
 * A row may hold fewer than the plan's S tokens (a decode beside a verification of 1 + k): the rest
 * is padding, whose keys are never kept and whose logits are never read.
 */
export interface BatchRow {
  sequenceId: number | null;
  tokenIds: number[];
  /** Logits for every token of this row (a speculative verification), not just its last. */
  allLogits?: boolean;
}

export interface BatchPlan {
  rows: BatchRow[];
  sequenceLength: number;
  /** Decode: the batch is the cache rows [firstRow, firstRow + rows.length) fed as views. */
  firstRow: number;
  /** Prefill (one row): the past is fed oldest-first (GQA reads a chunk over a wrapped ring by cache index). */
  timeOrdered: boolean;
  /** Logits for every new token of every row, not just the last (prompt scoring). */
  allLogits?: boolean;
  /** Hybrid graphs: run the GroupQueryAttention branch (prefill chunks) instead of the in-place one. */
  useGqa: boolean;
}

const MASKED = -1e30; // exp underflows to exactly 0 in fp32 (and to -inf after the fp16 cast)

export function buildFeeds(config: ModelConfig, attention: AttentionKind, slots: SequenceSlots, plan: BatchPlan, past: CacheFeeds): CacheFeeds {
  const { rows, sequenceLength: S } = plan;
  const B = rows.length;
  const lengths = rows.map((row) => (row.sequenceId === null ? 0 : slots.length(row.sequenceId)));
  const inputIds = new BigInt64Array(B * S);
  const positionIds = new BigInt64Array(B * S);
  const logitsRows: bigint[] = [];
  rows.forEach((row, b) => {
    const count = row.tokenIds.length;
    for (let s = 0; s < S; s++) {
      inputIds[b * S + s] = BigInt(row.sequenceId === null || s >= count ? 0 : row.tokenIds[s]);
      // Padding repeats the last real position: it stays inside the rotary table and after every real token.
      positionIds[b * S + s] = BigInt(lengths[b] + Math.min(s, count - 1));
    }
    if (row.sequenceId === null) return;
    if (plan.allLogits || row.allLogits) for (let s = 0; s < count; s++) logitsRows.push(BigInt(b * S + s));
    else logitsRows.push(BigInt(b * S + count - 1));
  });
  const feeds: CacheFeeds = {
    input_ids: { type: 'int64', data: inputIds, dims: [B, S] },
    position_ids: { type: 'int64', data: positionIds, dims: [B, S] },
    logits_index: { type: 'int64', data: BigInt64Array.from(logitsRows), dims: [logitsRows.length] },
    ...past,
  };

  // The past spans the layout's capacity, or a time-ordered prefill's valid slots.
  const pastSlots = plan.timeOrdered ? slots.validSlots(lengths[0]) : slots.capacity;
  const gqaReads = attention === 'fused' || (attention === 'hybrid' && plan.useGqa);
  const groupSize = config.queryHeadCount / config.keyValueHeadCount;
  if (attention !== 'unfused') {
    // GQA: seqlens_k = valid past + S - 1 per row; total_sequence_length = the batch maximum + 1.
    const seqlens = Int32Array.from(lengths, (length) => slots.validSlots(length) + S - 1);
    feeds.seqlens_k = { type: 'int32', data: seqlens, dims: [B] };
    feeds.total_sequence_length = { type: 'int32', data: Int32Array.of(Math.max(...seqlens) + 1), dims: [] };
  }
  if (attention === 'hybrid') feeds.use_gqa = { type: 'bool', data: Uint8Array.of(gqaReads ? 1 : 0), dims: [] };
  if (attention !== 'fused') {
    // A hybrid graph's GQA branch ignores the mask, but it is still a graph input: a 1-element stand-in.
    feeds.attention_bias = gqaReads
      ? { type: 'float32', data: new Float32Array(1), dims: [1, 1, 1, 1, 1] }
      : { type: 'float32', data: inPlaceMask(groupSize, slots, lengths, S, pastSlots), dims: [B, 1, groupSize, S, pastSlots + S] };
  }
  return feeds;
}

/**
 * Additive mask [batch, 1, groupSize, S, pastSlots + S] for the in-place attention path, rows ordered
 * (group, query) as the graph groups query heads: SequenceSlots.visibleKeys as 0 / MASKED.
 */
function inPlaceMask(groupSize: number, slots: SequenceSlots, lengths: number[], S: number, pastSlots: number): Float32Array {
  const keys = pastSlots + S;
  const mask = new Float32Array(lengths.length * groupSize * S * keys);
  lengths.forEach((length, b) => {
    slots.visibleKeys(length, S, pastSlots).forEach((visible, s) => {
      const row = Float32Array.from(visible, (seen) => (seen ? 0 : MASKED));
      for (let group = 0; group < groupSize; group++) mask.set(row, ((b * groupSize + group) * S + s) * keys);
    });
  });
  return mask;
}
