// The model engine: checkpoint -> KV store (its graph and session) + sequence slots (the KV layout). One
// step batches every single-token decode item into one run and prefills longer items chunk by chunk
// (B = 1); every run takes the same path whatever the store: past feeds -> feeds -> run -> advance.

import path from 'node:path';
import { Checkpoint } from '../checkpoint/checkpoint';
import type { ModelConfig } from '../checkpoint/config';
import { type BatchPlan, type BatchRow, buildFeeds } from './engine-feeds';
import { EngineCapacityError, type EngineOptions, type KvCacheStats, type ModelEngine, type StepItem, computeTypeOf, kvCacheElementType } from './engine-types';
import { type AttentionKind, chooseAttention } from '../graph/graph-attention';
import type { WeightSource } from '../graph/model-graph';
import { INT4_BLOCK_SIZE } from '../graph/quantize-int4';
import type { EngineTuning } from './engine-tuning';
import type { KvStore } from './kv-store';
import { KvStoreConfigError, loadKvStore } from './kv-store-loader';
import type { ModelSpec } from './model-spec';
import { SequenceSlots } from './sequence-slots';

/** What the server passes (EngineOptions) plus the knobs only benchmarks and tests turn (EngineTuning). */
export interface EngineLoadOptions extends EngineOptions, EngineTuning {}

export class EngineError extends Error {
  override name = 'EngineError';
}

const DEFAULT_CHUNK_WITHOUT_WINDOW = 512;
/**
 * CPU prefill chunk when none is given (capped by the window). A chunk's attention scratch (heads x chunk
 * x slots in fp32) stays in the CPU arena after it ran, so a small chunk bounds peak memory (one
 * window-sized chunk of Mistral 7B is gigabytes), and prefill measured no slower in small chunks than in
 * one (docs/bench/model-engine.md, "Figures behind defaults and code comments").
 */
const DEFAULT_CPU_CHUNK = 256;
/** MatMulNBits accuracy_level 4 (int8 activations): faster int4 decode than fp32 compute (docs/bench/model-engine.md), error bound in engine.test.ts. */
const DEFAULT_INT4_ACCURACY_LEVEL = 4;

function positiveInteger(value: number, setting: string): number {
  if (!Number.isInteger(value) || value <= 0) throw new EngineError(`${setting} must be a positive integer, got ${value}`);
  return value;
}

export class Engine implements ModelEngine {
  readonly maxModelLen: number;
  readonly chunkSize: number;
  readonly attention: AttentionKind;
  private lastTransferBytes = 0;
  private running = false;
  private readonly gqaDecode: boolean;
  /**
   * Verification items run one per session run (batch 1, S = 1 + k): the native session's GroupQueryAttention
   * takes S > 1 over a past only at batch 1, and its cache has no ring (slot = position), so a rollback is
   * only a shorter length.
   */
  private readonly verifiesAlone: boolean;
  readonly speculativeTokens: number;

  private constructor(
    readonly config: ModelConfig,
    readonly modelId: string,
    private readonly slots: SequenceSlots,
    private readonly store: KvStore,
    options: EngineLoadOptions,
  ) {
    // WebGPU: decode through GroupQueryAttention too (a native kernel there; the in-place branch's FusedMatMul is CPU-only).
    this.gqaDecode = options.gqaDecode ?? options.executionProvider === 'webgpu';
    this.attention = store.attention;
    this.maxModelLen = slots.options.maxModelLen;
    const windowChunk = config.slidingWindow ?? DEFAULT_CHUNK_WITHOUT_WINDOW;
    const defaultChunk = options.executionProvider === 'cpu' ? Math.min(windowChunk, DEFAULT_CPU_CHUNK) : windowChunk;
    this.chunkSize = positiveInteger(options.chunkSize ?? defaultChunk, 'chunkSize');
    this.speculativeTokens = options.speculativeTokens ?? 0;
    this.verifiesAlone = (options.runtime ?? 'js') === 'native';
  }

  /** Opens a Hugging Face checkpoint folder, builds (or loads the cached) graph and starts a session. */
  static async load(options: EngineLoadOptions): Promise<Engine> {
    const checkpoint = await Checkpoint.open(options.modelDir);
    try {
      return await Engine.fromWeights(checkpoint, options);
    } finally {
      await checkpoint.close();
    }
  }

  /** Same as load() for weights already in hand (tests build random models in memory). */
  static async fromWeights(source: WeightSource, options: EngineLoadOptions): Promise<Engine> {
    const config = source.config;
    positiveInteger(options.maxSequences, 'maxSequences');
    positiveInteger(options.intraOpThreads, 'intraOpThreads');
    const maxModelLen = positiveInteger(options.maxModelLen ?? config.maxPositions, 'maxModelLen');
    if (maxModelLen > config.maxPositions) {
      throw new EngineError(`maxModelLen ${maxModelLen} exceeds the model's max_position_embeddings ${config.maxPositions}`);
    }
    const computeType = options.computeType ?? computeTypeOf(options.dtype, options.executionProvider);
    if (computeType === 'float16' && options.dtype === 'fp32')
      throw new EngineError('fp32 weights compute in fp32 (computeType float16 needs dtype fp16 or int4)');
    // Resolved once: every store and the graph builder below read this, not the options.
    const spec: ModelSpec = {
      format: options.dtype,
      computeType,
      kvType: kvCacheElementType(computeType, options.kvCacheDtype),
      attention: options.attention ?? chooseAttention(config.headDim, options.executionProvider),
      int4AccuracyLevel: options.int4AccuracyLevel ?? DEFAULT_INT4_ACCURACY_LEVEL,
      int4BlockSize: options.int4BlockSize ?? INT4_BLOCK_SIZE,
    };
    const draftSlots = options.speculativeTokens ?? 0;
    if (!Number.isInteger(draftSlots) || draftSlots < 0) throw new EngineError(`speculativeTokens must be a non-negative integer, got ${draftSlots}`);
    if (draftSlots > 0) Engine.checkVerifiable(options, spec.attention);
    const requested = { slidingWindow: config.slidingWindow, maxSequences: options.maxSequences, maxModelLen, draftSlots };
    let loaded: Awaited<ReturnType<typeof loadKvStore>>;
    try {
      loaded = await loadKvStore(source, options, spec, requested);
    } catch (error) {
      if (error instanceof KvStoreConfigError) throw new EngineError(error.message);
      throw error;
    }
    const { store, layout } = loaded;
    const slots = new SequenceSlots({ ...layout, growth: store.resizesInPlace ? 'step' : 'double' });
    store.resize(slots.capacity, 0);
    return new Engine(config, path.basename(path.resolve(options.modelDir)), slots, store, options);
  }

  /**
   * Verification items (1 + k tokens) share the batched decode run, which only the in-place attention
   * path (a mask per row) can run: GroupQueryAttention refuses S > 1 over a past at batch > 1, and
   * masks a rolling buffer by cache index, which the draft slots would break. The native session runs
   * them alone instead (verifiesAlone).
   */
  private static checkVerifiable(options: EngineLoadOptions, attention: AttentionKind): void {
    if ((options.runtime ?? 'js') === 'native') return;
    let where: string | null = null;
    if (attention === 'fused') where = 'fused attention';
    else if (options.gqaDecode || options.executionProvider === 'webgpu' || options.residentKvCache) where = 'GroupQueryAttention decode or the resident cache';
    if (where) throw new EngineError(`speculativeTokens needs the host KV cache with in-place decode attention (hybrid or unfused), not ${where}`);
  }

  createSequence(): number {
    this.ensureFreeRow();
    return this.slots.create();
  }

  forkSequence(sourceId: number, length = this.sequenceLength(sourceId)): number {
    if (!this.canForkPrefix(sourceId, length)) throw new EngineError(`sequence ${sourceId} cannot be forked exactly at ${length} tokens`);
    this.ensureFreeRow();
    const { id, copy } = this.slots.fork(sourceId, length);
    this.store.fork(sourceId, id, copy);
    return id;
  }

  canForkPrefix(sourceId: number, length: number): boolean {
    return this.slots.prefixIsExact(this.sequenceLength(sourceId), length);
  }

  private ensureFreeRow(): void {
    const { maxSequences } = this.slots.options;
    if (this.slots.liveCount >= maxSequences) throw new EngineCapacityError(`all ${maxSequences} sequences are in use`);
  }

  releaseSequence(sequenceId: number): void {
    if (!this.slots.has(sequenceId)) return;
    const { move, freedRow, resized } = this.slots.release(sequenceId);
    this.store.release(sequenceId, move, freedRow);
    if (resized) this.store.resize(this.slots.capacity, this.slots.liveCount);
  }

  truncateSequence(sequenceId: number, length: number): void {
    if (!this.slots.has(sequenceId)) throw new EngineError(`unknown sequence ${sequenceId}`);
    try {
      this.slots.truncate(sequenceId, length);
    } catch (error) {
      throw new EngineError((error as Error).message);
    }
  }

  sequenceLength(sequenceId: number): number {
    if (!this.slots.has(sequenceId)) throw new EngineError(`unknown sequence ${sequenceId}`);
    return this.slots.length(sequenceId);
  }

  /** Slots per sequence per layer the layout spans right now (bounded by W - 1 with a window). */
  get cacheCapacity(): number {
    return this.slots.capacity;
  }

  private ensureFits(length: number): void {
    if (this.slots.ensureFits(length)) this.store.resize(this.slots.capacity, this.slots.liveCount);
  }

  async step(items: StepItem[]): Promise<Float32Array[]> {
    if (this.running) throw new EngineError('step() called while another step is running');
    this.validate(items);
    this.running = true;
    try {
      this.lastTransferBytes = 0;
      const results: Float32Array[] = new Array(items.length);
      const decodeIndices: number[] = [];
      for (let i = 0; i < items.length; i++) {
        if (items[i].verify && items[i].tokenIds.length > 1 && this.verifiesAlone) results[i] = await this.verifyAlone(items[i]);
        else if (items[i].tokenIds.length === 1 || items[i].verify) decodeIndices.push(i);
        else results[i] = await this.prefill(items[i]);
      }
      if (decodeIndices.length > 0) {
        const logits = await this.decode(decodeIndices.map((i) => items[i]));
        decodeIndices.forEach((itemIndex, k) => (results[itemIndex] = logits[k]));
      }
      return results;
    } finally {
      this.running = false;
    }
  }

  private validate(items: StepItem[]): void {
    const seen = new Set<number>();
    for (const { sequenceId, tokenIds, verify } of items) {
      const length = this.sequenceLength(sequenceId);
      if (verify && tokenIds.length > 1 + this.speculativeTokens) {
        throw new EngineError(`sequence ${sequenceId}: a verification of ${tokenIds.length} tokens exceeds 1 + speculativeTokens (${this.speculativeTokens})`);
      }
      if (seen.has(sequenceId)) throw new EngineError(`sequence ${sequenceId} appears twice in one step`);
      seen.add(sequenceId);
      if (tokenIds.length === 0) throw new EngineError(`sequence ${sequenceId}: a step item needs at least one token id`);
      if (length + tokenIds.length > this.maxModelLen) {
        throw new EngineError(`sequence ${sequenceId}: ${length + tokenIds.length} tokens exceed maxModelLen ${this.maxModelLen}`);
      }
      for (const id of tokenIds) {
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) throw new EngineError(`token id ${id} is outside [0, ${this.config.vocabSize})`);
      }
    }
  }

  /**
   * Appends `tokenIds` (chunked like a prefill) and returns the logits row of EVERY new token
   * ([tokenIds.length][vocabSize]): prompt log-probabilities and the KV self-consistency test.
   */
  async scoreTokens(sequenceId: number, tokenIds: number[]): Promise<Float32Array[]> {
    if (this.running) throw new EngineError('scoreTokens() called while a step is running');
    this.validate([{ sequenceId, tokenIds }]);
    this.running = true;
    try {
      this.lastTransferBytes = 0;
      const rows: Float32Array[] = [];
      await this.prefill({ sequenceId, tokenIds }, (chunkLogits) => rows.push(...chunkLogits));
      return rows;
    } finally {
      this.running = false;
    }
  }

  private async prefill(item: StepItem, allLogits?: (chunkLogits: Float32Array[]) => void): Promise<Float32Array> {
    let logits: Float32Array | null = null;
    for (let start = 0; start < item.tokenIds.length; start += this.chunkSize) {
      const tokenIds = item.tokenIds.slice(start, start + this.chunkSize);
      const length = this.slots.length(item.sequenceId);
      this.ensureFits(length + tokenIds.length);
      const plan: BatchPlan = {
        rows: [{ sequenceId: item.sequenceId, tokenIds }],
        sequenceLength: tokenIds.length,
        firstRow: this.slots.row(item.sequenceId),
        timeOrdered: this.attention !== 'unfused' && tokenIds.length > 1 && this.slots.isWrapped(length),
        allLogits: allLogits !== undefined,
        useGqa: tokenIds.length > 1 || this.gqaDecode,
      };
      const chunkLogits = await this.run(plan);
      allLogits?.(chunkLogits);
      logits = chunkLogits[chunkLogits.length - 1];
    }
    return logits!;
  }

  /** One verification item in a run of its own; its logits are one flat [tokenIds.length * vocabSize] block. */
  private async verifyAlone(item: StepItem): Promise<Float32Array> {
    this.ensureFits(this.slots.length(item.sequenceId) + item.tokenIds.length);
    const rows: BatchRow[] = [{ sequenceId: item.sequenceId, tokenIds: item.tokenIds, allLogits: true }];
    const plan: BatchPlan = { rows, sequenceLength: item.tokenIds.length, firstRow: this.slots.row(item.sequenceId), timeOrdered: false, useGqa: true };
    const [logits] = await this.run(plan);
    return logits;
  }

  /**
   * All decode and verification items in one run over the cache rows they span (rows of other
   * sequences ride along as fillers); S is the longest item, shorter rows are padded.
   */
  private async decode(items: StepItem[]): Promise<Float32Array[]> {
    const rowOf = new Map(items.map((item) => [this.slots.row(item.sequenceId), item]));
    const firstRow = Math.min(...rowOf.keys());
    const lastRow = Math.max(...rowOf.keys());
    for (const item of items) this.ensureFits(this.slots.length(item.sequenceId) + item.tokenIds.length);
    const rows: BatchRow[] = [];
    for (let row = firstRow; row <= lastRow; row++) {
      const item = rowOf.get(row);
      rows.push(item ? { sequenceId: item.sequenceId, tokenIds: item.tokenIds, allLogits: item.verify } : { sequenceId: null, tokenIds: [0] });
    }
    const sequenceLength = Math.max(...items.map((item) => item.tokenIds.length));
    const logits = await this.run({ rows, sequenceLength, firstRow, timeOrdered: false, useGqa: this.gqaDecode });
    // run() returns logits in row order of the real rows; map back to item order.
    const byId = new Map<number, Float32Array>();
    rows.filter((row) => row.sequenceId !== null).forEach((row, k) => byId.set(row.sequenceId!, logits[k]));
    return items.map((item) => byId.get(item.sequenceId)!);
  }

  /** One session run over the plan's rows: the same path for every store. Returns the wanted logits rows of the real rows, in row order. */
  private async run(plan: BatchPlan): Promise<Float32Array[]> {
    const past = await this.store.pastFeeds(this.slots, plan);
    const feeds = buildFeeds(this.config, this.attention, this.slots, plan, past);
    const result = await this.store.run(feeds, this.slots, plan);
    this.lastTransferBytes += result.transferBytes;
    const { vocabSize } = this.config;
    const logits: Float32Array[] = [];
    let read = 0;
    for (const { sequenceId, tokenIds, allLogits } of plan.rows) {
      if (sequenceId === null) continue;
      this.slots.advance(sequenceId, tokenIds.length);
      if (plan.allLogits) {
        for (let t = 0; t < tokenIds.length; t++, read++) logits.push(result.logits.subarray(read * vocabSize, (read + 1) * vocabSize));
      } else {
        // A verification row's logits stay one flat [tokenIds.length * vocabSize] block.
        const rowCount = allLogits ? tokenIds.length : 1;
        logits.push(result.logits.subarray(read * vocabSize, (read + rowCount) * vocabSize));
        read += rowCount;
      }
    }
    return logits;
  }

  kvStats(): KvCacheStats {
    return {
      slotsUsed: this.slots.slotsUsed(),
      slotsTotal: this.slots.slotsMax(),
      bytesPerSlot: this.store.bytesPerSlot,
      lastStepTransferBytes: this.lastTransferBytes,
      ...(this.store.residentBytes ? { residentBytes: this.store.residentBytes() } : {}),
    };
  }

  /** One line for the start-up log: where the KV cache lives and, on the host, whether it is reserved up front. */
  kvCacheSummary(): string {
    return this.store.summary();
  }

  freeSequences(): number {
    return this.slots.options.maxSequences - this.slots.liveCount;
  }

  async dispose(): Promise<void> {
    await this.store.dispose();
  }
}
