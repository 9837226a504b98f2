// What happens to the KV cache on a GPU: the resident KV store. With the WebGPU provider the keys and
// values never leave device memory. The model graph (cacheIo 'resident') reads each run's past from the
// resident tensors [rows, kvHead, slots, headDim] per layer, by row and slot indices, and returns them
// updated (ScatterND of the new keys/values) as gpu-buffer outputs, which are fed back next run. Per run
// only token ids, positions, small index/mask inputs go up and the logits rows come down (counted in
// transferBytes). Rows and slots are the layout's (SequenceSlots), as for the host store: tensor row r
// is layout row r and the tensors span the layout's capacity plus a scratch slot. The layout's row
// copies and capacity changes arrive synchronously; they are made by one run of a small re-layout graph
// on the device before the next step (a session run is asynchronous). The same code runs with host
// tensors on the CPU provider, which is how it is tested without a GPU (resident-kv-store.test.ts).
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
import { residentInputName, residentOutputName, residentRelayoutGraph } from '../graph/resident-kv-graph';
import { ResidentRowSources, residentIndices } from './resident-kv-indices';
import type { RowCopy, SequenceSlots } from './sequence-slots';
import type { StoreLoad } from './model-spec';

type CacheTensor = DeviceTensor | Feed;

export class ResidentKvStore implements KvStore {
  private readonly rowSources = new ResidentRowSources();
  private tensors = new Map<string, CacheTensor>(); // per layer and kind: [rows, kvHead, slots, headDim]
  private rows = 0;
  private slots = 0;
  private readonly names: string[] = [];

  private constructor(
    private readonly config: ModelConfig,
    readonly session: OrtSession,
    private readonly relayoutSession: OrtSession,
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
    const relayout = await OrtSession.create(concatChunks(encodeOnnxModel(residentRelayoutGraph(config, prepared.computeType))), sessionOptions);
    return new ResidentKvStore(config, session, relayout, prepared.computeType, prepared.attention);
  }

  /** Bytes of K and V for one token slot, all layers. */
  get bytesPerSlot(): number {
    const { layerCount, keyValueHeadCount, headDim } = this.config;
    return 2 * layerCount * keyValueHeadCount * headDim * (this.elementType === 'float32' ? 4 : 2);
  }

  /**
   * Every step's ScatterND already copies the whole tensors, so a re-layout pass costs about one step:
   * the layout follows the longest sequence in fixed steps ('step'), keeping the tensors tight.
   */
  readonly resizesInPlace = true;

  resize(): void {
    // The new capacity is read from the layout at the next run, which re-lays the tensors out first (relayout).
  }

  fork(_sourceId: number, _forkId: number, copy: RowCopy): void {
    this.rowSources.copy(copy);
  }

  release(_sequenceId: number, move: RowCopy | null): void {
    if (move) this.rowSources.copy(move);
    // The top row the layout dropped goes with the next re-layout (the tensors then have liveCount rows).
  }

  summary(): string {
    return 'KV cache: device-resident (session outputs fed back each step)';
  }

  /** Index inputs that gather the past of `plan`'s rows from the resident tensors and say where the new keys go, plus the tensors. */
  async pastFeeds(slots: SequenceSlots, plan: BatchPlan): Promise<CacheFeeds> {
    const { keyValueHeadCount } = this.config;
    await this.relayout(slots);
    // Pure GQA ('fused'): the past buffer doubles as GQA's present, so it needs room for valid past + S keys.
    const S = plan.sequenceLength;
    const keysPerRow = plan.rows.map((row) => (row.sequenceId === null ? 0 : slots.validSlots(slots.length(row.sequenceId))) + S);
    const indices = residentIndices(plan, slots, keyValueHeadCount, this.slots, this.attention === 'fused' ? Math.max(...keysPerRow) : 0);
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

  /**
   * Makes the tensors the layout's shape: its live rows (forks and compaction copied, released top rows
   * dropped) and its capacity plus the scratch slot. The first run allocates zeros on the host.
   */
  private async relayout(layout: SequenceSlots): Promise<void> {
    const rows = Math.max(1, layout.liveCount);
    const slots = layout.capacity + 1;
    if (this.tensors.size === 0) {
      this.rowSources.take(rows, rows);
      [this.rows, this.slots] = [rows, slots];
      const zeros = this.hostTensor(this.newArray(rows * slots));
      this.replaceTensors(() => zeros);
      return;
    }
    const rowSources = this.rowSources.take(rows, this.rows);
    if (rowSources === null && slots === this.slots) return;
    // Slots past the old ones take the old scratch slot: no sequence's valid slots reach them yet.
    const slotSources = Array.from({ length: slots }, (_, slot) => Math.min(slot, this.slots - 1));
    const feeds: Record<string, CacheTensor> = {
      row_sources: { type: 'int64', data: BigInt64Array.from(rowSources ?? Array.from({ length: rows }, (_, row) => row), BigInt), dims: [rows] },
      slot_sources: { type: 'int64', data: BigInt64Array.from(slotSources, BigInt), dims: [slots] },
    };
    const outputs = await this.relayoutSession.runWithDevice({ ...feeds, ...Object.fromEntries(this.tensors) });
    [this.rows, this.slots] = [rows, slots];
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
    await this.relayoutSession.release();
  }
}
