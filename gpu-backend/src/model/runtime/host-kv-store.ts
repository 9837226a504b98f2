// The host KV store (CPU and CUDA providers): the cache lives in host arrays (HostKvBuffers), each run
// feeds the past as zero-copy row-range views (or a time-ordered copy for a wrapped prefill chunk),
// fetches the new keys/values and writes them back where SequenceSlots says.

import os from 'node:os';
import type { AttentionKind } from '../graph/graph-attention';
import type { WeightSource } from '../graph/model-graph';
import { prepareOnnxModel } from '../graph/onnx-model-store';
import type { BatchPlan } from './engine-feeds';
import type { ExecutionProvider } from './engine-types';
import { type CacheArray, HostKvBuffers } from './host-kv-buffers';
import type { CacheFeeds, KvStore } from './kv-store';
import { type Feed, OrtSession } from './ort-session';
import { type RowCopy, SequenceSlots, type SequenceSlotsOptions } from './sequence-slots';
import type { StoreLoad } from './model-spec';

export interface HostKvStoreOptions extends StoreLoad {
  /** Reserve the whole cache at load; undefined: when it takes at most DEFAULT_RESERVE_SHARE of free memory. */
  reserveKvMemory?: boolean;
}

/** The reservation's default: reserve when the whole cache takes at most this share of free memory. */
const DEFAULT_RESERVE_SHARE = 0.5;

export class HostKvStore implements KvStore {
  /** A device provider (cuda) copies every feed to the GPU each run, the past included. */
  private readonly feedsCrossToDevice: boolean;

  constructor(
    private readonly session: OrtSession,
    readonly buffers: HostKvBuffers,
    readonly attention: AttentionKind,
    executionProvider: ExecutionProvider,
    private readonly reservationRequest?: boolean,
  ) {
    this.feedsCrossToDevice = executionProvider !== 'cpu';
  }

  /** Builds (or loads the cached) graph for `source`, starts its session and sets the buffers up for `layout` (capacity 0 until the first resize). */
  static async load(source: WeightSource, layout: SequenceSlotsOptions, options: HostKvStoreOptions): Promise<HostKvStore> {
    const { config } = source;
    const prepared = await prepareOnnxModel(source, { ...options.spec, ...options.files });
    const session = await OrtSession.create(prepared.model, {
      executionProvider: options.session.executionProvider,
      intraOpThreads: options.session.intraOpThreads,
      profilePrefix: options.session.profilePrefix,
    });
    const bufferOptions = {
      layerCount: config.layerCount,
      keyValueHeadCount: config.keyValueHeadCount,
      headDim: config.headDim,
      maxSequences: layout.maxSequences,
      slotLimit: SequenceSlots.slotLimitOf(layout),
      elementType: prepared.cacheType,
    };
    const reserve = options.reserveKvMemory ?? HostKvBuffers.reservedBytes(bufferOptions) <= DEFAULT_RESERVE_SHARE * os.freemem();
    const buffers = new HostKvBuffers({ ...bufferOptions, reserve }, 0);
    return new HostKvStore(session, buffers, prepared.attention, options.session.executionProvider, options.reserveKvMemory);
  }

  get elementType(): 'float32' | 'float16' {
    return this.buffers.options.elementType;
  }

  /** Reserved arenas re-lay rows out in place; growing buffers allocate and copy every row. */
  get resizesInPlace(): boolean {
    return this.buffers.reserved;
  }

  get bytesPerSlot(): number {
    const { layerCount, keyValueHeadCount, headDim, elementType } = this.buffers.options;
    return 2 * layerCount * keyValueHeadCount * headDim * (elementType === 'float32' ? 4 : 2);
  }

  /** The rows' views, or (plan.timeOrdered: one row, wrapped ring) its valid slots oldest first. */
  async pastFeeds(slots: SequenceSlots, plan: BatchPlan): Promise<CacheFeeds> {
    const { layerCount, keyValueHeadCount, headDim, elementType } = this.buffers.options;
    const B = plan.rows.length;
    const order = plan.timeOrdered ? slots.timeOrderedSlots(slots.length(plan.rows[0].sequenceId!)) : null;
    const row = order ? slots.row(plan.rows[0].sequenceId!) : plan.firstRow;
    const pastOf = (array: CacheArray) => (order ? this.buffers.gather(array, row, order) : this.buffers.rowsView(array, plan.firstRow, B));
    const dims = [B, keyValueHeadCount, order ? order.length : this.buffers.capacity, headDim];
    const feeds: CacheFeeds = {};
    for (let layer = 0; layer < layerCount; layer++) {
      feeds[`past_key.${layer}`] = { type: elementType, data: pastOf(this.buffers.keys[layer]), dims };
      feeds[`past_value.${layer}`] = { type: elementType, data: pastOf(this.buffers.values[layer]), dims };
    }
    return feeds;
  }

  async run(feeds: CacheFeeds, slots: SequenceSlots, plan: BatchPlan): Promise<{ logits: Float32Array; transferBytes: number }> {
    const { layerCount } = this.buffers.options;
    const outputNames = ['logits'];
    for (let layer = 0; layer < layerCount; layer++) outputNames.push(`new_key.${layer}`, `new_value.${layer}`);
    const outputs = await this.session.run(feeds as Record<string, Feed>, outputNames);
    let transferBytes = 0;
    for (const name of outputNames) transferBytes += outputs[name].byteLength;
    if (this.feedsCrossToDevice) for (const feed of Object.values(feeds)) transferBytes += (feed as Feed).data.byteLength; // the past included
    const S = plan.sequenceLength;
    plan.rows.forEach(({ sequenceId, tokenIds }, b) => {
      if (sequenceId === null) return;
      const length = slots.length(sequenceId);
      const count = tokenIds.length; // the rest of the row is padding: never kept
      const writeSlots = Array.from({ length: S }, (_, t) => (t < count ? slots.writeSlot(length, t, count) : -1));
      for (let layer = 0; layer < layerCount; layer++) {
        const newKeys = outputs[`new_key.${layer}`] as CacheArray;
        const newValues = outputs[`new_value.${layer}`] as CacheArray;
        this.buffers.write(slots.row(sequenceId), layer, newKeys, newValues, b, S, writeSlots);
      }
    });
    return { logits: outputs.logits as Float32Array, transferBytes };
  }

  resize(capacity: number, liveRows: number): void {
    this.buffers.resize(capacity, liveRows);
  }

  fork(_sourceId: number, _forkId: number, copy: RowCopy): void {
    this.buffers.copyRow(copy.from, copy.to);
  }

  release(_sequenceId: number, move: RowCopy | null): void {
    if (move) this.buffers.copyRow(move.from, move.to);
  }

  summary(): string {
    const bytes = HostKvBuffers.reservedBytes(this.buffers.options);
    const size = bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
    const rows = `${this.buffers.options.maxSequences} sequences x ${this.buffers.options.slotLimit} slots`;
    return this.buffers.reserved
      ? `KV cache: ${size} reserved at start (${rows})`
      : `KV cache: grows on demand, up to ${size} (${rows}; ${this.reservationRequest === false ? 'reservation turned off' : 'over half the free memory, so not reserved'})`;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
