// The contract between the model engine (ONNX session + KV cache) and the serving scheduler.
// The scheduler only sees this interface, so it can be tested with a deterministic fake.

import type { ModelConfig } from '../checkpoint/config';

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';
export type WeightFormat = 'fp32' | 'fp16' | 'int4';
/** 'js': onnxruntime-node's session (ort-session.ts); 'native': the addon's session with the KV cache bound in place (native-session.ts). */
export type SessionRuntime = 'js' | 'native';

export interface EngineOptions {
  /** Hugging Face checkpoint folder (config.json + safetensors). */
  modelDir: string;
  dtype: WeightFormat;
  executionProvider: ExecutionProvider;
  /** Default 'js'. */
  runtime?: SessionRuntime;
  /**
   * --runtime native: decode runs with every input at a fixed address per batch bucket, each captured once
   * as a CUDA graph and replayed. Default: on for cuda. On the cpu, true runs that path without capture
   * (it only adds copies there; for tests).
   */
  cudaGraphs?: boolean;
  intraOpThreads: number;
  /** Longest prefill chunk per session.run; defaults to the sliding window (or 512 without one), on the CPU at most 256. */
  chunkSize?: number;
  /** Most sequences (KV cache rows) alive at once, prefix-cache snapshots included. */
  maxSequences: number;
  /** Longest prompt + completion of one sequence; defaults to the model's max positions. */
  maxModelLen?: number;
  /**
   * Allocate and touch the whole host KV cache (maxSequences x the slot limit) at load, so it never
   * grows mid-step. Default: when it takes at most half the memory free at load.
   */
  reserveKvMemory?: boolean;
  /**
   * KV cache element type: 'auto' (default) follows the weights' compute type (fp32 for fp32 and int4,
   * fp16 for fp16); 'fp16' under fp32 compute halves KV memory and the bytes each decode step reads.
   */
  kvCacheDtype?: KvCacheDtype;
  /** Activation type; default computeTypeOf(dtype, executionProvider). int4 may compute in either. */
  computeType?: ComputeType;
  /** int4 only: MatMulNBits block_size, weights per fp32 scale (16, 32, 64, 128 or 256; default INT4_BLOCK_SIZE, 64). */
  int4BlockSize?: number;
  /** Folder of cached ONNX graphs (plain and resident variants); null builds in memory (small models, tests). */
  onnxCacheDir: string | null;
  /** File prefix for an ONNX Runtime per-op profile of the model session, written when it is released. */
  profilePrefix?: string;
  /**
   * Most draft tokens a verification item carries (k_max, speculative decoding); 0 (default) turns
   * verification items off. With a sliding window the rolling buffer grows to W - 1 + k_max slots.
   */
  speculativeTokens?: number;
}

export type KvCacheDtype = 'auto' | 'fp32' | 'fp16';
export type ComputeType = 'float32' | 'float16';

/**
 * The activations' type: fp16 weights compute in fp16; so do int4 weights on CUDA, whose GroupQueryAttention
 * and int4 kernels are fp16 only; everything else in fp32. Without a provider (the graph layer's default):
 * the format's own.
 */
export function computeTypeOf(dtype: WeightFormat, executionProvider?: ExecutionProvider): ComputeType {
  return dtype === 'fp16' || (dtype === 'int4' && executionProvider === 'cuda') ? 'float16' : 'float32';
}

/** The cache element type a compute type and a kvCacheDtype give. */
export function kvCacheElementType(computeType: ComputeType, kvCacheDtype: KvCacheDtype = 'auto'): ComputeType {
  if (kvCacheDtype === 'auto') return computeType;
  return kvCacheDtype === 'fp16' ? 'float16' : 'float32';
}

export interface KvCacheStats {
  /** Token slots currently holding keys/values, all sequences, one layer. */
  slotsUsed: number;
  /** Token slots the cache can hold at most, all sequences, one layer. */
  slotsTotal: number;
  /** Bytes of K and V for one token slot, all layers together. */
  bytesPerSlot: number;
  /** Bytes copied host<->device (or into/out of session.run) by the last decode step. */
  lastStepTransferBytes: number;
  /** Bytes of memory the cache occupies now, where the store can tell and it differs from its reservation. */
  residentBytes?: number;
}

/** One unit of work in a step: append `tokenIds` to a sequence and return logits of its last new token. */
export interface StepItem {
  sequenceId: number;
  /** New tokens, placed at positions [length, length + tokenIds.length) of the sequence. */
  tokenIds: number[];
  /**
   * A speculative verification (the last sampled id + at most speculativeTokens drafts): it runs in the
   * batched decode run and returns the logits of every token, flat [tokenIds.length * vocabSize].
   */
  verify?: boolean;
}

export interface ModelEngine {
  readonly config: ModelConfig;
  readonly modelId: string;
  /** Longest prompt + completion of one sequence. */
  readonly maxModelLen: number;
  /** A new empty sequence; throws EngineCapacityError when maxSequences are alive. */
  createSequence(): number;
  /**
   * A new sequence whose KV state equals that of `sourceId`'s first `length` positions (default all):
   * n > 1 choices, prefix-cache reuse. Throws unless canForkPrefix.
   */
  forkSequence(sourceId: number, length?: number): number;
  /** Whether the first `length` positions of `sourceId` can be forked exactly (a sliding window may have overwritten them). */
  canForkPrefix(sourceId: number, length: number): boolean;
  releaseSequence(sequenceId: number): void;
  /** Rolls a sequence back to `length` tokens: draft tokens a verification wrote and the sampler rejected. */
  truncateSequence(sequenceId: number, length: number): void;
  /** Draft tokens a verification item may carry (EngineOptions.speculativeTokens; 0: none). */
  readonly speculativeTokens: number;
  /** Tokens processed so far (positions cached). */
  sequenceLength(sequenceId: number): number;
  /**
   * Runs one engine step: every item's tokens go through the model (decode items of one token are
   * batched into one session.run, verification items with them; longer items are prefilled in chunks).
   * Returns one logits row ([vocabSize]) per item (a verification item: all of its rows), in item
   * order. Items must name distinct sequences.
   */
  step(items: StepItem[]): Promise<Float32Array[]>;
  kvStats(): KvCacheStats;
  /** Sequences that can still be created. */
  freeSequences(): number;
  dispose(): Promise<void>;
}

export class EngineCapacityError extends Error {
  override name = 'EngineCapacityError';
}
