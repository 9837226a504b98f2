// The native KV store (--runtime native): the cache lives inside the native session (NativeSession),
// allocated once at full length, one [maxSequences, kvHead, slots, headDim] tensor per layer and kind
// (on the CPU a reservation that occupies memory only where tokens are written, and a release gives
// the freed slots' pages back), and bound as both past and present of GroupQueryAttention
// (shared-buffer mode): the op writes each new key at index seqlens_k of its row, in place. Per run
// only ids, positions, lengths and the logits rows cross; row copies (forks, compaction) are memcpys.
//
// Layout: slot = position (SequenceSlots without a ring). The sliding window is the op's
// local_window_size over the full-length row, so positions beyond W stay exact without a rolling
// buffer. One spare slot per row past maxModelLen: a decode batch spans a row range, and a filler row
// (another sequence's, riding along) gets its new key written at its own length, beyond every key
// it holds, where nothing reads it.
//
// Fixed decode (SessionSpec.cudaGraphs): a decode run pads its batch to the smallest bucket (1, 2, 4,
// ... maxSequences) that holds it and binds that window of cache rows, starting at the batch's first row
// (lower where the window would pass the last row), with every input at an address the window keeps, so
// that on CUDA each window's run is captured once as a CUDA graph and replayed. Live rows sit above the
// prefix snapshots (SequenceSlots.fork), so windows start where the decoding rows are, not at row 0.
// The window's rows outside the plan ride along as fillers do (their new key lands past their length).
// At most MAX_FIXED_WINDOWS windows are captured; a batch needing another runs unfixed.

import type { WeightSource } from '../graph/model-graph';
import { presentOutputName } from '../graph/graph-attention';
import { prepareOnnxModel } from '../graph/onnx-model-store';
import type { BatchPlan } from './engine-feeds';
import type { CacheFeeds, KvStore } from './kv-store';
import { type NativeFeed, NativeSession, NativeSessionError } from './native-session';
import type { Feed } from './ort-session';
import type { RowCopy, SequenceSlots, SequenceSlotsOptions } from './sequence-slots';
import type { StoreLoad } from './model-spec';

export class NativeKvStore implements KvStore {
  readonly attention = 'fused';
  /** The cache spans every slot from the start: the layout's capacity changes move nothing. */
  readonly resizesInPlace = true;
  private logits = new Float32Array(0); // [logits rows, vocabSize] at its start, reused by every run
  private readonly windows = new Set<string>(); // fixed windows bound so far, "start:size"

  private constructor(
    private readonly session: NativeSession,
    readonly elementType: 'float32' | 'float16',
    readonly bytesPerSlot: number,
    private readonly vocabSize: number,
    /** Fixed decode: the batch buckets, ascending; null runs every step as it comes. */
    private readonly buckets: number[] | null,
    /** Cache rows (maxSequences): no window passes the last. */
    private readonly rows: number,
    /** Slots per cache row: a fixed run's total_sequence_length, the one value every replay can take. */
    private readonly rowSlots: number,
    /** Where the cache lives and how decode runs, for the start-up line. */
    private readonly note: string,
  ) {}

  /** The layout the store needs: no ring (slot = position), the window left to the attention op. */
  static layoutOf(layout: SequenceSlotsOptions): SequenceSlotsOptions {
    return { ...layout, slidingWindow: null };
  }

  static async load(source: WeightSource, layout: SequenceSlotsOptions, { spec, session: run, files }: StoreLoad): Promise<NativeKvStore> {
    const { config } = source;
    const provider = run.executionProvider;
    if (provider === 'webgpu') throw new NativeSessionError('the native session runs the cpu or cuda provider, not webgpu (use --runtime js)');
    // Shared-buffer GQA: the cache is bound as past and present, so attention is the fused kind.
    const prepared = await prepareOnnxModel(source, { ...spec, ...files, attention: 'fused', cacheIo: 'shared-buffer' });
    const { session, cudaGraphs, note } = NativeKvStore.createSession(prepared.model, provider, run);
    const fixed = run.cudaGraphs && (provider === 'cpu' || cudaGraphs);
    const pastNames: string[] = [];
    const presentNames: string[] = [];
    for (let layer = 0; layer < config.layerCount; layer++) {
      for (const kind of ['key', 'value'] as const) {
        pastNames.push(`past_${kind}.${layer}`);
        presentNames.push(presentOutputName(kind, layer));
      }
    }
    const elementType = prepared.cacheType;
    // One spare slot per row past maxModelLen (the header says why).
    const slots = layout.maxModelLen + 1;
    try {
      session.allocateCache({
        pastNames,
        presentNames,
        rows: layout.maxSequences,
        keyValueHeads: config.keyValueHeadCount,
        slots,
        headDim: config.headDim,
        elementType,
        fixedRuns: fixed,
      });
    } catch (error) {
      session.release();
      throw new NativeSessionError(`native session: the KV cache could not be allocated: ${(error as Error).message}`);
    }
    const bytesPerSlot = 2 * config.layerCount * config.keyValueHeadCount * config.headDim * (elementType === 'float32' ? 4 : 2);
    const buckets = fixed ? batchBuckets(layout.maxSequences) : null;
    const decodeNote = buckets ? `decode fixed per window of rows (buckets ${buckets.join(', ')}), ${cudaGraphs ? 'each a CUDA graph' : 'not captured'}` : note;
    const where = provider === 'cpu' ? 'reserved in the native session (memory only where tokens are)' : 'allocated once on the device in the native session';
    return new NativeKvStore(
      session,
      elementType,
      bytesPerSlot,
      config.vocabSize,
      buckets,
      layout.maxSequences,
      slots,
      `${where}, bound in place (shared-buffer GQA); ${decodeNote}`,
    );
  }

  /**
   * The model session, with CUDA graphs when asked for on cuda. ONNX Runtime refuses graph capture for some
   * graphs at session creation (control flow, nodes off the device); the session then runs without them.
   */
  private static createSession(
    model: string | Uint8Array,
    provider: 'cpu' | 'cuda',
    run: StoreLoad['session'],
  ): { session: NativeSession; cudaGraphs: boolean; note: string } {
    const options = { provider, intraOpThreads: run.intraOpThreads };
    if (!run.cudaGraphs || provider !== 'cuda') return { session: NativeSession.create(model, options), cudaGraphs: false, note: 'no CUDA graphs' };
    try {
      return { session: NativeSession.create(model, { ...options, cudaGraphs: true }), cudaGraphs: true, note: '' };
    } catch (error) {
      const session = NativeSession.create(model, options);
      return { session, cudaGraphs: false, note: `decode without CUDA graphs (${(error as Error).message.split('\n')[0]})` };
    }
  }

  /** Nothing to feed: the session binds the cache rows itself. */
  async pastFeeds(): Promise<CacheFeeds> {
    return {};
  }

  async run(feeds: CacheFeeds, slots: SequenceSlots, plan: BatchPlan): Promise<{ logits: Float32Array; transferBytes: number }> {
    const S = plan.sequenceLength;
    const batch = plan.rows.length;
    const window = S === 1 ? this.fixedWindow(plan) : null;
    if (window) return this.runFixed(feeds as Record<string, Feed>, slots, plan, window);
    // seqlens_k from the row owners' lengths, fillers included: that is where the op writes each row's new key.
    const seqlens = Int32Array.from({ length: batch }, (_, b) => slots.lengthOfRow(plan.firstRow + b) + S - 1);
    const withLengths: Record<string, Feed> = {
      ...(feeds as Record<string, Feed>),
      seqlens_k: { type: 'int32', data: seqlens, dims: [batch] },
      total_sequence_length: { type: 'int32', data: Int32Array.of(Math.max(...seqlens) + 1), dims: [] },
    };
    const list = Object.entries(withLengths).map(([name, feed]) => ({ name, ...feed }));
    return this.runSession(list, withLengths.logits_index.dims[0], { firstRow: plan.firstRow, batch, fixed: false });
  }

  /** One session run over cache rows [firstRow, firstRow + batch); its logits rows and the bytes it moved. */
  private async runSession(
    feeds: NativeFeed[],
    logitsRows: number,
    rows: { firstRow: number; batch: number; fixed: boolean },
  ): Promise<{ logits: Float32Array; transferBytes: number }> {
    const needed = logitsRows * this.vocabSize;
    if (this.logits.length < needed) this.logits = new Float32Array(needed);
    await this.session.run({ feeds, logitsName: 'logits', logits: this.logits, logitsRows, vocab: this.vocabSize, ...rows });
    const transferBytes = needed * 4 + feeds.reduce((sum, feed) => sum + feed.data.byteLength, 0);
    // A copy: the buffer is reused by the next run while the caller may still hold these rows.
    return { logits: this.logits.slice(0, needed), transferBytes };
  }

  /** The rows a fixed run of `plan` binds, or null: fixed decode off, or no window left to capture. */
  private fixedWindow(plan: BatchPlan): { start: number; size: number } | null {
    const size = this.buckets?.find((bucket) => bucket >= plan.rows.length);
    if (size === undefined) return null;
    const start = Math.min(plan.firstRow, this.rows - size);
    const key = `${start}:${size}`;
    if (!this.windows.has(key)) {
      if (this.windows.size >= MAX_FIXED_WINDOWS) return null;
      this.windows.add(key);
    }
    return { start, size };
  }

  /**
   * A decode run over the window's cache rows: the plan's rows keep their feeds, the window's other rows
   * ride along with their own lengths (ids 0), and total_sequence_length is the row's slot count, so every
   * run of the window feeds the same shapes and a captured graph stays valid for all of them.
   */
  private async runFixed(
    feeds: Record<string, Feed>,
    slots: SequenceSlots,
    plan: BatchPlan,
    { start, size: bucket }: { start: number; size: number },
  ): Promise<{ logits: Float32Array; transferBytes: number }> {
    const unexpected = Object.keys(feeds).filter((name) => !FIXED_FEEDS.has(name));
    if (unexpected.length > 0) throw new NativeSessionError(`a fixed decode run cannot feed ${unexpected.join(', ')}`);
    const ids = new BigInt64Array(bucket);
    const positions = new BigInt64Array(bucket);
    const seqlens = new Int32Array(bucket);
    const given = { ids: feeds.input_ids.data as BigInt64Array, positions: feeds.position_ids.data as BigInt64Array };
    for (let r = 0; r < bucket; r++) {
      const b = start + r - plan.firstRow;
      const length = slots.lengthOfRow(start + r);
      seqlens[r] = length;
      const inPlan = b >= 0 && b < plan.rows.length;
      ids[r] = inPlan ? given.ids[b] : 0n;
      positions[r] = inPlan ? given.positions[b] : BigInt(length);
    }
    // logits_index counts rows of the plan's batch; here rows of the window. The tail repeats its row 0.
    const wanted = feeds.logits_index.data as BigInt64Array;
    const logitsIndex = new BigInt64Array(bucket);
    wanted.forEach((index, i) => {
      logitsIndex[i] = index + BigInt(plan.firstRow - start);
    });
    const list: NativeFeed[] = [
      { name: 'input_ids', type: 'int64', data: ids, dims: [bucket, 1] },
      { name: 'position_ids', type: 'int64', data: positions, dims: [bucket, 1] },
      { name: 'logits_index', type: 'int64', data: logitsIndex, dims: [bucket] },
      { name: 'seqlens_k', type: 'int32', data: seqlens, dims: [bucket] },
      { name: 'total_sequence_length', type: 'int32', data: Int32Array.of(this.rowSlots), dims: [], host: true },
    ];
    return this.runSession(list, wanted.length, { firstRow: start, batch: bucket, fixed: true });
  }

  resize(): void {
    // The cache was allocated at full length; the layout's capacity is only how far it reads.
  }

  fork(_sourceId: number, _forkId: number, copy: RowCopy): void {
    this.session.copyRow(copy.from, copy.to, copy.validSlots);
  }

  release(_sequenceId: number, move: RowCopy | null, freedRow: number): void {
    // The host cache then holds memory only for live tokens: the row moved into keeps the moved slots.
    if (move) {
      this.session.copyRow(move.from, move.to, move.validSlots);
      this.session.discardRow(move.to, move.validSlots);
    }
    this.session.discardRow(freedRow, 0);
  }

  residentBytes(): number {
    return this.session.residentCacheBytes;
  }

  summary(): string {
    return `KV cache: ${(this.session.cacheBytes / 2 ** 20).toFixed(1)} MiB ${this.note}`;
  }

  async dispose(): Promise<void> {
    this.session.release();
  }
}

/** Windows captured at most (each a CUDA graph holding its own activation buffers). */
const MAX_FIXED_WINDOWS = 64;

/** What a decode run feeds (buildFeeds for fused attention, plus the lengths run() adds). */
const FIXED_FEEDS = new Set(['input_ids', 'position_ids', 'logits_index', 'seqlens_k', 'total_sequence_length']);

/** 1, 2, 4, ... up to `rows`, and `rows` itself: a decode batch pads to at most twice its size. */
export function batchBuckets(rows: number): number[] {
  const buckets: number[] = [];
  for (let size = 1; size < rows; size *= 2) buckets.push(size);
  buckets.push(rows);
  return buckets;
}
