// How many sequences (KV cache rows) fit a KV memory budget: the default for --max-sequences, derived
// from the model's shape and the memory this host has, so a 7B model on a small host does not oversubscribe.

import type { ModelConfig } from '../model/checkpoint/config';
import { type ComputeType, type KvCacheDtype, type SessionRuntime, type WeightFormat, computeTypeOf, kvCacheElementType } from '../model/runtime/engine-types';
import { SequenceSlots } from '../model/runtime/sequence-slots';

/** Default budget on the CPU provider: this share of the memory free at start, after the weights. */
export const CPU_KV_MEMORY_SHARE = 0.5;
/** Rows beyond the running sequences: prefix-cache snapshots and n > 1 forks. */
const MIN_SEQUENCES = 2;

/** What sizes one sequence's KV cache: the model, its formats, its length and the session that holds it. */
export interface KvShape {
  config: ModelConfig;
  dtype: WeightFormat;
  maxModelLen: number;
  kvCacheDtype?: KvCacheDtype;
  /** The engine's compute type (computeTypeOf with its provider); default the format's own. */
  computeType?: ComputeType;
  runtime?: SessionRuntime;
  /** Speculative draft tokens per step (--spec-tokens when on): a windowed ring holds that many more slots. */
  draftSlots?: number;
}

/**
 * Bytes of K and V one sequence holds at its longest: the rolling buffer (W - 1 + draft slots) or
 * maxModelLen; the native session keeps every position and a spare slot whatever the window (native-kv-store.ts).
 */
export function kvBytesPerSequence({ config, dtype, maxModelLen, kvCacheDtype = 'auto', computeType, runtime = 'js', draftSlots = 0 }: KvShape): number {
  const elementBytes = kvCacheElementType(computeType ?? computeTypeOf(dtype), kvCacheDtype) === 'float16' ? 2 : 4;
  const slots = runtime === 'native' ? maxModelLen + 1 : SequenceSlots.slotLimitOf({ slidingWindow: config.slidingWindow, maxModelLen, draftSlots });
  return 2 * config.layerCount * config.keyValueHeadCount * config.headDim * elementBytes * slots;
}

/**
 * The sequence count for a budget, never above `ceiling` (the scheduler's own default) nor below
 * MIN_SEQUENCES; the reason string is logged at start so operators see why.
 */
export function sequencesForBudget(shape: KvShape, budgetBytes: number, ceiling: number): { maxSequences: number; reason: string } {
  const perSequence = kvBytesPerSequence(shape);
  const fit = Math.floor(budgetBytes / perSequence);
  const maxSequences = Math.max(MIN_SEQUENCES, Math.min(ceiling, fit));
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return {
    maxSequences,
    reason: `KV budget ${mib(budgetBytes)} / ${mib(perSequence)} per full-length sequence -> ${fit} fit, using ${maxSequences}`,
  };
}
