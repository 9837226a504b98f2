// What happens to the KV cache on a GPU: the resident KV store. With the WebGPU provider the keys and
// values never leave device memory. The model graph (cacheIo 'resident') reads each run's past from the
// resident tensors [rows, kvHead, slots, headDim] per layer, by row and slot indices, and returns them
// updated (ScatterND of the new keys/values) as gpu-buffer outputs, which are fed back next run. Per run
// only token ids, positions, small index/mask inputs go up and the logits rows come down (counted in
// transferBytes). Rows never move here (ResidentRowTable: a row per sequence id, freed rows reused); a
// fork or a growth of rows/slots is one run of a small resize graph on the device. Slot numbers and
// masks are SequenceSlots' arithmetic, as for the host store. The same code runs with host tensors on
// the CPU provider, which is how it is tested without a GPU (resident-kv-store.test.ts).
//
// Cost the Node binding imposes: it cannot write into a pre-allocated output, so every step's ScatterND
// produces a new cache tensor (a device-to-device copy of all resident rows and slots, per layer).

import type { ModelConfig } from '../checkpoint/config';
import type { BatchPlan } from './engine-feeds';
import type { CacheArray } from './host-kv-buffers';
import type { CacheFeeds, KvStore } from './kv-store';
import type { AttentionKind } from '../graph/graph-attention';
import type { WeightSource } from '../graph/model-graph';
import { prepareOnnxModel } from '../graph/onnx-model-store';
import { concatChunks, encodeOnnxModel } from '../graph/onnx-proto-writer';
import { DeviceTensor, type Feed, OrtSession } from './ort-session';
import { residentInputName, residentOutputName, residentResizeGraph } from '../graph/resident-kv-graph';
import { ResidentRowTable, residentIndices } from './resident-kv-indices';
import type { SequenceSlots } from './sequence-slots';
import type { StoreLoad } from './model-spec';

type CacheTensor = DeviceTensor | Feed;

const SLOT_STEP = 256;

export class ResidentKvStore implements KvStore {
  private readonly table = new ResidentRowTable();
  private tensors = new Map<string, CacheTensor>();
  private rows = 0;
  private slots = 0;
  private readonly names: string[] = [];

  private constructor(
    private readonly config: ModelConfig,
    readonly session: OrtSession,
    private readonly resizeSession: OrtSession,
    readonly elementType: 'float32' | 'float16',
    readonly attention: AttentionKind,
  ) {
    for (let layer = 0; layer < config.layerCount; layer++) for (const kind of ['key', 'value'] as const) this.names.push(residentInputName(kind, layer));
  }

  /** Prepares the resident-cache graph for `source` through the ONNX cache and starts its sessions. */
  static async load(source: WeightSource, { spec, session: run, files }: StoreLoad): Promise<ResidentKvStore> {
    const { config } = source;
    const prepared = await prepareOnnxModel(source, { ...spec, ...files, cacheIo: 'resident' });
    const presentNames: string[] = [];
    for (let layer = 0; layer < config.layerCount; layer++) presentNames.push(residentOutputName('key', layer), residentOutputName('value', layer));
    const sessionOptions = {
      executionProvider: run.executionProvider,
      intraOpThreads: run.intraOpThreads,
      deviceOutputs: run.executionProvider === 'webgpu' ? presentNames : [],
    };
    const session = await OrtSession.create(prepared.model, { ...sessionOptions, profilePrefix: run.profilePrefix });
    const resize = await OrtSession.create(concatChunks(encodeOnnxModel(residentResizeGraph(config, prepared.computeType))), sessionOptions);
    return new ResidentKvStore(config, session, resize, prepared.computeType, prepared.attention);
  }

  /** Bytes of K and V for one token slot, all layers. */
  get bytesPerSlot(): number {
    const { layerCount, keyValueHeadCount, headDim } = this.config;
    return 2 * layerCount * keyValueHeadCount * headDim * (this.elementType === 'float32' ? 4 : 2);
  }

  /** The capacity only sets the slots each run gathers; the tensors grow on their own, in SLOT_STEP steps. */
  readonly resizesInPlace = true;

  /** Resident tensor shape right now: rows and slots (scratch slot included). */
  get shape(): { rows: number; slots: number } {
    return { rows: this.rows, slots: this.slots };
  }

  resize(): void {
    // The resident tensors follow the layout's capacity at the next run (ensureShape), in SLOT_STEP steps.
  }

  fork(sourceId: number, forkId: number): void {
    this.table.fork(sourceId, forkId);
  }

  release(): void {
    // Rows of sequences the layout no longer has are collected at the start of the next run.
  }

  summary(): string {
    return 'KV cache: device-resident (session outputs fed back each step)';
  }

  /** Index inputs that gather the past of `plan`'s rows from the resident tensors and say where the new keys go, plus the tensors. */
  async pastFeeds(slots: SequenceSlots, plan: BatchPlan): Promise<CacheFeeds> {
    const { keyValueHeadCount } = this.config;
    this.table.collect((sequenceId) => slots.has(sequenceId));
    for (const row of plan.rows) {
      if (row.sequenceId === null || this.table.has(row.sequenceId)) continue;
      if (slots.length(row.sequenceId) > 0) throw new Error(`sequence ${row.sequenceId} has a past but no resident row (forks must go through the engine)`);
      this.table.assign(row.sequenceId);
    }
    await this.ensureShape(this.table.highWater, slots);
    // Pure GQA ('fused'): the past buffer doubles as GQA's present, so it needs room for valid past + S keys.
    const S = plan.sequenceLength;
    const keysPerRow = plan.rows.map((row) => (row.sequenceId === null ? 0 : slots.validSlots(slots.length(row.sequenceId))) + S);
    const indices = residentIndices(plan, slots, this.table, keyValueHeadCount, this.slots, this.attention === 'fused' ? Math.max(...keysPerRow) : 0);
    return {
      cache_rows: { type: 'int64', data: indices.rows, dims: [indices.rows.length] },
      cache_slots: { type: 'int64', data: indices.slots, dims: [indices.slots.length] },
      cache_write_index: { type: 'int64', data: indices.writeIndex, dims: [plan.rows.length, S, keyValueHeadCount, 3] },
      ...Object.fromEntries(this.tensors),
    };
  }

  /** One run: the graph writes the new keys/values into the resident tensors it returns; only the logits come down. */
  async run(feeds: CacheFeeds): Promise<{ logits: Float32Array; transferBytes: number }> {
    let transferBytes = 0;
    for (const [name, feed] of Object.entries(feeds)) if (!this.tensors.has(name)) transferBytes += (feed as Feed).data.byteLength;
    const outputs = await this.session.runWithDevice(feeds);
    this.replaceTensors(
      (name) => outputs.device[name.replace('cache_', 'present_')] ?? this.hostTensor(outputs.host[name.replace('cache_', 'present_')] as CacheArray),
    );
    const logits = outputs.host.logits as Float32Array;
    return { logits, transferBytes: transferBytes + logits.byteLength };
  }

  /** Resizes the resident tensors (zero rows/slots added, released top rows dropped) and makes pending fork copies, on the device. */
  private async ensureShape(neededRows: number, layout: SequenceSlots): Promise<void> {
    const slotLimit = (layout.ringSlots ?? layout.options.maxModelLen) + 1;
    const neededSlots = layout.capacity + 1;
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
    const outputs = await this.resizeSession.runWithDevice({ ...feeds, ...Object.fromEntries(this.tensors) });
    this.rows = rows;
    this.slots = slots;
    this.replaceTensors(
      (name) => outputs.device[name.replace('cache_', 'present_')] ?? this.hostTensor(outputs.host[name.replace('cache_', 'present_')] as CacheArray),
    );
  }

  private newArray(slotsTimesRows: number): CacheArray {
    const length = slotsTimesRows * this.config.keyValueHeadCount * this.config.headDim;
    return this.elementType === 'float32' ? new Float32Array(length) : new Uint16Array(length);
  }

  private hostTensor(data: CacheArray): Feed {
    return { type: this.elementType, data, dims: [this.rows, this.config.keyValueHeadCount, this.slots, this.config.headDim] };
  }

  private replaceTensors(next: (name: string) => CacheTensor): void {
    const old = this.tensors;
    this.tensors = new Map(this.names.map((name) => [name, next(name)]));
    for (const tensor of old.values()) if (tensor instanceof DeviceTensor) tensor.dispose();
  }

  async dispose(): Promise<void> {
    for (const tensor of this.tensors.values()) if (tensor instanceof DeviceTensor) tensor.dispose();
    this.tensors.clear();
    await this.session.release();
    await this.resizeSession.release();
  }
}
