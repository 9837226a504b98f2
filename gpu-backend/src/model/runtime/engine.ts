// The model engine: checkpoint -> cached ONNX graph -> session, plus the KV cache. One step batches
// every single-token decode item into one session.run and prefills longer items chunk by chunk (B = 1).

import os from 'node:os';
import path from 'node:path';
import { Checkpoint } from '../checkpoint/checkpoint';
import type { ModelConfig } from '../checkpoint/config';
import { type BatchPlan, type BatchRow, buildFeeds } from './engine-feeds';
import { EngineCapacityError, type EngineOptions, type KvCacheStats, type ModelEngine, type StepItem, kvCacheElementType } from './engine-types';
import { type AttentionKind, chooseAttention } from '../graph/graph-attention';
import type { EngineTuning } from './engine-tuning';
import { KvCache } from './kv-cache';
import type { WeightSource } from '../graph/model-graph';
import { prepareOnnxModel } from '../graph/onnx-model-store';
import { INT4_BLOCK_SIZE } from '../graph/quantize-int4';
import { OrtSession } from './ort-session';
import { ResidentKvCache } from './resident-kv';

/** What the server passes (EngineOptions) plus the knobs only benchmarks and tests turn (EngineTuning). */
export interface EngineLoadOptions extends EngineOptions, EngineTuning {}

export class EngineError extends Error {
  override name = 'EngineError';
}

const DEFAULT_CHUNK_WITHOUT_WINDOW = 512;
/** reserveKvMemory's default: reserve when the whole cache takes at most this share of free memory. */
const DEFAULT_RESERVE_SHARE = 0.5;
/** MatMulNBits accuracy_level 4 (int8 activations): ~1.4x faster int4 decode here, error bound in engine.test.ts. */
const DEFAULT_INT4_ACCURACY_LEVEL = 4;

function positiveInteger(value: number, setting: string): number {
  if (!Number.isInteger(value) || value <= 0) throw new EngineError(`${setting} must be a positive integer, got ${value}`);
  return value;
}

export class Engine implements ModelEngine {
  readonly maxModelLen: number;
  readonly chunkSize: number;
  private lastTransferBytes = 0;
  private running = false;
  private resident: ResidentKvCache | null = null;
  private readonly gqaDecode: boolean;
  /** A device provider (cuda, or webgpu without the resident cache) copies every feed to the GPU each run. */
  private readonly feedsCrossToDevice: boolean;
  private readonly reservationRequest: boolean | undefined;

  private constructor(
    readonly config: ModelConfig,
    readonly modelId: string,
    readonly attention: AttentionKind,
    private readonly session: OrtSession,
    private readonly cache: KvCache,
    options: EngineLoadOptions,
  ) {
    // WebGPU: decode through GroupQueryAttention too (a native kernel there; the in-place branch's FusedMatMul is CPU-only).
    this.gqaDecode = options.gqaDecode ?? options.executionProvider === 'webgpu';
    this.feedsCrossToDevice = options.executionProvider !== 'cpu';
    this.reservationRequest = options.reserveKvMemory;
    this.maxModelLen = cache.options.maxModelLen;
    this.chunkSize = positiveInteger(options.chunkSize ?? config.slidingWindow ?? DEFAULT_CHUNK_WITHOUT_WINDOW, 'chunkSize');
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
    const int4AccuracyLevel = options.int4AccuracyLevel ?? DEFAULT_INT4_ACCURACY_LEVEL;
    const int4BlockSize = options.int4BlockSize ?? INT4_BLOCK_SIZE;
    const attention = options.attention ?? chooseAttention(config.headDim, options.executionProvider);
    const kvType = kvCacheElementType(options.dtype, options.kvCacheDtype);
    const resident = options.residentKvCache ?? options.executionProvider === 'webgpu';
    if (resident && kvType !== kvCacheElementType(options.dtype)) {
      throw new EngineError(`kvCacheDtype ${options.kvCacheDtype} needs the host KV cache; the device-resident cache keeps the compute type`);
    }
    const residentLoad = resident
      ? await ResidentKvCache.load(source, {
          executionProvider: options.executionProvider,
          intraOpThreads: options.intraOpThreads,
          format: options.dtype,
          attention,
          int4AccuracyLevel,
          int4BlockSize,
          cacheDir: options.onnxCacheDir,
          checkpointDir: options.modelDir,
          externalDataThresholdBytes: options.externalDataThresholdBytes,
          profilePrefix: options.profilePrefix,
        })
      : null;
    const prepared =
      residentLoad ??
      (await prepareOnnxModel(source, {
        format: options.dtype,
        attention,
        int4AccuracyLevel,
        int4BlockSize,
        kvType,
        cacheDir: options.onnxCacheDir,
        checkpointDir: options.modelDir,
        externalDataThresholdBytes: options.externalDataThresholdBytes,
      }));
    const session =
      'model' in prepared
        ? await OrtSession.create(prepared.model, { executionProvider: options.executionProvider, intraOpThreads: options.intraOpThreads })
        : prepared.resident.session;
    const cacheOptions = {
      layerCount: residentLoad ? 0 : config.layerCount, // resident: the host cache only keeps lengths and rows
      keyValueHeadCount: config.keyValueHeadCount,
      headDim: config.headDim,
      slidingWindow: config.slidingWindow,
      maxSequences: options.maxSequences,
      maxModelLen,
      elementType: 'cacheType' in prepared ? prepared.cacheType : prepared.computeType,
    };
    const reserve = options.reserveKvMemory ?? KvCache.reservedBytes(cacheOptions) <= DEFAULT_RESERVE_SHARE * os.freemem();
    const cache = new KvCache({ ...cacheOptions, reserve });
    const engine = new Engine(config, path.basename(path.resolve(options.modelDir)), prepared.attention, session, cache, options);
    engine.resident = residentLoad?.resident ?? null;
    return engine;
  }

  createSequence(): number {
    if (this.cache.liveCount >= this.cache.options.maxSequences) {
      throw new EngineCapacityError(`all ${this.cache.options.maxSequences} sequences are in use`);
    }
    return this.cache.create();
  }

  forkSequence(sourceId: number): number {
    this.sequenceLength(sourceId);
    if (this.cache.liveCount >= this.cache.options.maxSequences) {
      throw new EngineCapacityError(`all ${this.cache.options.maxSequences} sequences are in use`);
    }
    const id = this.cache.fork(sourceId);
    this.resident?.fork(sourceId, id);
    return id;
  }

  releaseSequence(sequenceId: number): void {
    if (this.cache.has(sequenceId)) this.cache.release(sequenceId);
  }

  sequenceLength(sequenceId: number): number {
    if (!this.cache.has(sequenceId)) throw new EngineError(`unknown sequence ${sequenceId}`);
    return this.cache.length(sequenceId);
  }

  /** Slots per sequence per layer allocated right now (bounded by W - 1 with a window). */
  get cacheCapacity(): number {
    return this.cache.capacity;
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
        if (items[i].tokenIds.length === 1) decodeIndices.push(i);
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
    for (const { sequenceId, tokenIds } of items) {
      const length = this.sequenceLength(sequenceId);
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
      const length = this.cache.length(item.sequenceId);
      this.cache.ensureFits(length + tokenIds.length);
      const plan: BatchPlan = {
        rows: [{ sequenceId: item.sequenceId, tokenIds }],
        sequenceLength: tokenIds.length,
        firstRow: this.cache.row(item.sequenceId),
        timeOrdered: this.attention !== 'unfused' && tokenIds.length > 1 && this.cache.isWrapped(length),
        allLogits: allLogits !== undefined,
        useGqa: tokenIds.length > 1 || this.gqaDecode,
      };
      const chunkLogits = await this.run(plan);
      allLogits?.(chunkLogits);
      logits = chunkLogits[chunkLogits.length - 1];
    }
    return logits!;
  }

  /** All decode items in one run over the cache rows they span (rows of other sequences ride along as fillers). */
  private async decode(items: StepItem[]): Promise<Float32Array[]> {
    const rowOf = new Map(items.map((item) => [this.cache.row(item.sequenceId), item]));
    const firstRow = Math.min(...rowOf.keys());
    const lastRow = Math.max(...rowOf.keys());
    for (const item of items) this.cache.ensureFits(this.cache.length(item.sequenceId) + 1);
    const rows: BatchRow[] = [];
    for (let row = firstRow; row <= lastRow; row++) rows.push(rowOf.get(row) ?? { sequenceId: null, tokenIds: [0] });
    const logits = await this.run({ rows, sequenceLength: 1, firstRow, timeOrdered: false, useGqa: this.gqaDecode });
    // run() returns logits in row order of the real rows; map back to item order.
    const byId = new Map<number, Float32Array>();
    rows.filter((row) => row.sequenceId !== null).forEach((row, k) => byId.set(row.sequenceId!, logits[k]));
    return items.map((item) => byId.get(item.sequenceId)!);
  }

  private async run(plan: BatchPlan): Promise<Float32Array[]> {
    if (this.resident) {
      const result = await this.resident.run(plan, this.cache, buildFeeds(this.config, this.attention, this.resident.feedView(this.cache), plan));
      this.lastTransferBytes += result.transferBytes;
      return result.logits;
    }
    const { layerCount, vocabSize } = this.config;
    const feeds = buildFeeds(this.config, this.attention, this.cache, plan);
    const outputNames = ['logits'];
    for (let layer = 0; layer < layerCount; layer++) outputNames.push(`new_key.${layer}`, `new_value.${layer}`);
    const outputs = await this.session.run(feeds, outputNames);
    for (const name of outputNames) this.lastTransferBytes += outputs[name].byteLength;
    if (this.feedsCrossToDevice) for (const feed of Object.values(feeds)) this.lastTransferBytes += feed.data.byteLength; // the past included
    const S = plan.sequenceLength;
    const logits: Float32Array[] = [];
    plan.rows.forEach((row, b) => {
      if (row.sequenceId === null) return;
      for (let layer = 0; layer < layerCount; layer++) {
        const newKeys = outputs[`new_key.${layer}`] as Float32Array | Uint16Array;
        const newValues = outputs[`new_value.${layer}`] as Float32Array | Uint16Array;
        this.cache.write(row.sequenceId, layer, newKeys, newValues, b, S, S);
      }
      this.cache.advance(row.sequenceId, S);
      for (let t = plan.allLogits ? 0 : S - 1; t < S; t++) {
        const k = logits.length;
        logits.push((outputs.logits as Float32Array).subarray(k * vocabSize, (k + 1) * vocabSize));
      }
    });
    return logits;
  }

  kvStats(): KvCacheStats {
    return {
      slotsUsed: this.cache.slotsUsed(),
      slotsTotal: this.cache.slotsMax(),
      bytesPerSlot: this.resident?.bytesPerSlot ?? this.cache.bytesPerSlot(),
      lastStepTransferBytes: this.lastTransferBytes,
    };
  }

  /** One line for the start-up log: how much host KV memory and whether it is reserved up front. */
  kvCacheSummary(): string {
    if (this.resident) return 'KV cache: device-resident (session outputs fed back each step)';
    const bytes = KvCache.reservedBytes(this.cache.options);
    const size = bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
    const rows = `${this.cache.options.maxSequences} sequences x ${this.cache.slotsMax() / this.cache.options.maxSequences} slots`;
    return this.cache.reserved
      ? `KV cache: ${size} reserved at start (${rows})`
      : `KV cache: grows on demand, up to ${size} (${rows}; ${this.reservationRequest === false ? 'reservation turned off' : 'over half the free memory, so not reserved'})`;
  }

  freeSequences(): number {
    return this.cache.options.maxSequences - this.cache.liveCount;
  }

  async dispose(): Promise<void> {
    if (this.resident) await this.resident.release();
    else await this.session.release();
  }
}
