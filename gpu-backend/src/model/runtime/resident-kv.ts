// The resident KV cache: with the WebGPU provider the keys/values stay in device memory between steps.
// The model graph (addResidentCache) reads each step's past from the resident tensors and returns them
// updated as gpu-buffer outputs, which are fed back next step; per step only token ids, positions, small
// index/mask inputs go up and the logits rows come down (counted in transferBytes). The same code runs
// with host tensors on the CPU provider, which is how it is tested without a GPU.
//
// Cost the Node binding imposes: it cannot write into a pre-allocated output, so every step's ScatterND
// produces a new cache tensor (a device-to-device copy of all resident rows and slots, per layer).

import type { ModelConfig } from '../checkpoint/config';
import type { BatchPlan } from './engine-feeds';
import type { ExecutionProvider, WeightFormat } from './engine-types';
import type { AttentionKind } from '../graph/graph-attention';
import type { CacheArray, KvCache } from './kv-cache';
import type { WeightSource } from '../graph/model-graph';
import { prepareOnnxModel } from '../graph/onnx-model-store';
import { concatChunks, encodeOnnxModel } from '../graph/onnx-proto-writer';
import { DeviceTensor, type Feed, OrtSession } from './ort-session';
import { residentInputName, residentOutputName, residentResizeGraph } from '../graph/resident-kv-graph';
import { ResidentRowTable, residentIndices } from './resident-kv-indices';

export interface ResidentLoadOptions {
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
  format: WeightFormat;
  attention?: AttentionKind;
  int4AccuracyLevel?: number;
  int4BlockSize?: number;
  /** The ONNX cache folder (the resident graph is cached like the plain one); null builds in memory. */
  cacheDir: string | null;
  /** The checkpoint folder, part of the cache key. */
  checkpointDir: string;
  /** Estimated weight bytes above which the weights go to an external data file (default 1.5 GiB). */
  externalDataThresholdBytes?: number;
  /** File prefix for an ONNX Runtime per-op profile of the model session, written when it is released. */
  profilePrefix?: string;
}

type CacheTensor = DeviceTensor | Feed;

const SLOT_STEP = 256;
const EMPTY = new Float32Array(0);

export class ResidentKvCache {
  private readonly table = new ResidentRowTable();
  private tensors = new Map<string, CacheTensor>();
  private rows = 0;
  private slots = 0;
  private readonly names: string[] = [];

  private constructor(
    private readonly config: ModelConfig,
    readonly session: OrtSession,
    private readonly resize: OrtSession,
    private readonly computeType: 'float32' | 'float16',
    private readonly attention: AttentionKind,
  ) {
    for (let layer = 0; layer < config.layerCount; layer++) for (const kind of ['key', 'value'] as const) this.names.push(residentInputName(kind, layer));
  }

  /** Prepares the resident-cache graph for `source` through the ONNX cache and starts its sessions. */
  static async load(
    source: WeightSource,
    options: ResidentLoadOptions,
  ): Promise<{ resident: ResidentKvCache; attention: AttentionKind; computeType: 'float32' | 'float16' }> {
    const { config } = source;
    const prepared = await prepareOnnxModel(source, {
      variant: 'resident-kv',
      format: options.format,
      attention: options.attention,
      int4AccuracyLevel: options.int4AccuracyLevel,
      int4BlockSize: options.int4BlockSize,
      cacheDir: options.cacheDir,
      checkpointDir: options.checkpointDir,
      externalDataThresholdBytes: options.externalDataThresholdBytes,
    });
    const presentNames: string[] = [];
    for (let layer = 0; layer < config.layerCount; layer++) presentNames.push(residentOutputName('key', layer), residentOutputName('value', layer));
    const sessionOptions = {
      executionProvider: options.executionProvider,
      intraOpThreads: options.intraOpThreads,
      deviceOutputs: options.executionProvider === 'webgpu' ? presentNames : [],
    };
    const session = await OrtSession.create(prepared.model, { ...sessionOptions, profilePrefix: options.profilePrefix });
    const resize = await OrtSession.create(concatChunks(encodeOnnxModel(residentResizeGraph(config, prepared.computeType))), sessionOptions);
    return {
      resident: new ResidentKvCache(config, session, resize, prepared.computeType, prepared.attention),
      attention: prepared.attention,
      computeType: prepared.computeType,
    };
  }

  /** Bytes of K and V for one token slot, all layers. */
  get bytesPerSlot(): number {
    const { layerCount, keyValueHeadCount, headDim } = this.config;
    return 2 * layerCount * keyValueHeadCount * headDim * (this.computeType === 'float32' ? 4 : 2);
  }

  /** Resident tensor shape right now: rows and slots (scratch slot included). */
  get shape(): { rows: number; slots: number } {
    return { rows: this.rows, slots: this.slots };
  }

  fork(sourceId: number, targetId: number): void {
    this.table.fork(sourceId, targetId);
  }

  /**
   * What buildFeeds reads as "the cache": the host cache's lengths and ring arithmetic, with empty
   * past arrays (the past comes from the resident tensors; the feeds are replaced in run()).
   */
  feedView(cache: KvCache): KvCache {
    const view = Object.create(cache) as KvCache;
    const empty = new Proxy([] as CacheArray[], { get: (target, key) => (typeof key === 'string' && /^\d+$/.test(key) ? EMPTY : Reflect.get(target, key)) });
    Object.defineProperty(view, 'keys', { value: empty });
    Object.defineProperty(view, 'values', { value: empty });
    view.rowsView = () => EMPTY;
    view.timeOrderedPast = (sequenceId: number) => ({ data: EMPTY, slots: cache.validSlots(cache.length(sequenceId)) });
    return view;
  }

  /** One engine run: returns the logits rows (same order as Engine.run) and the host<->device bytes. */
  async run(plan: BatchPlan, cache: KvCache, feeds: Record<string, Feed>): Promise<{ logits: Float32Array[]; transferBytes: number }> {
    const { keyValueHeadCount, vocabSize } = this.config;
    this.table.collect((sequenceId) => cache.has(sequenceId));
    for (const row of plan.rows) {
      if (row.sequenceId === null || this.table.has(row.sequenceId)) continue;
      if (cache.length(row.sequenceId) > 0) throw new Error(`sequence ${row.sequenceId} has a past but no resident row (forks must go through the engine)`);
      this.table.assign(row.sequenceId);
    }
    await this.ensureShape(this.table.highWater, cache);
    // Pure GQA ('fused'): the past buffer doubles as GQA's present, so it needs room for valid past + S keys.
    const S = plan.sequenceLength;
    const keysPerRow = plan.rows.map((row) => (row.sequenceId === null ? 0 : cache.validSlots(cache.length(row.sequenceId))) + S);
    const indices = residentIndices(plan, cache, this.table, keyValueHeadCount, this.slots, this.attention === 'fused' ? Math.max(...keysPerRow) : 0);
    for (const name of Object.keys(feeds)) if (/^past_(key|value)\.\d+$/.test(name)) delete feeds[name];
    feeds.cache_rows = { type: 'int64', data: indices.rows, dims: [indices.rows.length] };
    feeds.cache_slots = { type: 'int64', data: indices.slots, dims: [indices.slots.length] };
    feeds.cache_write_index = { type: 'int64', data: indices.writeIndex, dims: [plan.rows.length, plan.sequenceLength, keyValueHeadCount, 3] };
    let transferBytes = 0;
    for (const feed of Object.values(feeds)) transferBytes += feed.data.byteLength;
    const outputs = await this.session.runWithDevice({ ...feeds, ...Object.fromEntries(this.tensors) });
    this.replaceTensors(
      (name) => outputs.device[name.replace('cache_', 'present_')] ?? this.hostTensor(outputs.host[name.replace('cache_', 'present_')] as CacheArray),
    );
    const logitsData = outputs.host.logits as Float32Array;
    transferBytes += logitsData.byteLength;

    const logits: Float32Array[] = [];
    for (const row of plan.rows) {
      if (row.sequenceId === null) continue;
      cache.advance(row.sequenceId, S);
      for (let t = plan.allLogits ? 0 : S - 1; t < S; t++) logits.push(logitsData.subarray(logits.length * vocabSize, (logits.length + 1) * vocabSize));
    }
    return { logits, transferBytes };
  }

  /** Resizes the resident tensors (zero rows/slots added, released top rows dropped) and makes pending fork copies, on the device. */
  private async ensureShape(neededRows: number, cache: KvCache): Promise<void> {
    const slotLimit = (cache.ringSlots ?? cache.options.maxModelLen) + 1;
    const neededSlots = cache.capacity + 1;
    if (this.tensors.size === 0) {
      this.rows = Math.max(1, neededRows);
      this.slots = Math.min(slotLimit, Math.ceil(neededSlots / SLOT_STEP) * SLOT_STEP);
      const zeros = this.hostTensor(this.newArray(this.rows * this.slots));
      this.replaceTensors(() => zeros);
      return;
    }
    const rows = Math.max(1, neededRows); // grows, or shrinks when the top rows were released
    if (rows === this.rows && neededSlots <= this.slots && this.table.pendingCopies.length === 0) return;
    const slots = neededSlots <= this.slots ? this.slots : Math.min(slotLimit, Math.ceil(neededSlots / SLOT_STEP) * SLOT_STEP);
    const pads = BigInt64Array.from([0, 0, 0, 0, Math.max(0, rows - this.rows), 0, slots - this.slots, 0].map(BigInt));
    const rowSources = this.table.takeRowSources(rows);
    const feeds: Record<string, CacheTensor> = {
      pads: { type: 'int64', data: pads, dims: [8] },
      row_sources: { type: 'int64', data: rowSources, dims: [rows] },
    };
    const outputs = await this.resize.runWithDevice({ ...feeds, ...Object.fromEntries(this.tensors) });
    this.rows = rows;
    this.slots = slots;
    this.replaceTensors(
      (name) => outputs.device[name.replace('cache_', 'present_')] ?? this.hostTensor(outputs.host[name.replace('cache_', 'present_')] as CacheArray),
    );
  }

  private newArray(slotsTimesRows: number): CacheArray {
    const length = slotsTimesRows * this.config.keyValueHeadCount * this.config.headDim;
    return this.computeType === 'float32' ? new Float32Array(length) : new Uint16Array(length);
  }

  private hostTensor(data: CacheArray): Feed {
    return { type: this.computeType, data, dims: [this.rows, this.config.keyValueHeadCount, this.slots, this.config.headDim] };
  }

  private replaceTensors(next: (name: string) => CacheTensor): void {
    const old = this.tensors;
    this.tensors = new Map(this.names.map((name) => [name, next(name)]));
    for (const tensor of old.values()) if (tensor instanceof DeviceTensor) tensor.dispose();
  }

  async release(): Promise<void> {
    for (const tensor of this.tensors.values()) if (tensor instanceof DeviceTensor) tensor.dispose();
    this.tensors.clear();
    await this.session.release();
    await this.resize.release();
  }
}
