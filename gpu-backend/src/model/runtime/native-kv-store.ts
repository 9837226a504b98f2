// The native KV store (--runtime native): the cache lives inside the native session (NativeSession),
// allocated once from the session's allocator at full length, one [maxSequences, kvHead, slots,
// headDim] tensor per layer and kind, and bound as both past and present of GroupQueryAttention
// (shared-buffer mode): the op writes each new key at index seqlens_k of its row, in place. Per run
// only ids, positions, lengths and the logits rows cross; row copies (forks, compaction) are memcpys.
//
// Layout: slot = position (SequenceSlots without a ring). The sliding window is the op's
// local_window_size over the full-length row, so positions beyond W stay exact without a rolling
// buffer. One spare slot per row past maxModelLen: a decode batch spans a row range, and a filler row
// (another sequence's, riding along) gets its new key written at its own length, beyond every key
// it holds, where nothing reads it.

import type { WeightSource } from '../graph/model-graph';
import { presentOutputName } from '../graph/graph-attention';
import { prepareOnnxModel } from '../graph/onnx-model-store';
import type { BatchPlan } from './engine-feeds';
import type { CacheFeeds, KvStore } from './kv-store';
import { NativeSession, NativeSessionError } from './native-session';
import type { Feed } from './ort-session';
import type { RowCopy, SequenceSlots, SequenceSlotsOptions } from './sequence-slots';
import type { StoreLoad } from './model-spec';

export class NativeKvStore implements KvStore {
  readonly attention = 'fused';
  /** The cache spans every slot from the start: the layout's capacity changes move nothing. */
  readonly resizesInPlace = true;
  private logits = new Float32Array(0); // [logits rows, vocabSize] at its start, reused by every run

  private constructor(
    private readonly session: NativeSession,
    readonly elementType: 'float32' | 'float16',
    readonly bytesPerSlot: number,
    private readonly vocabSize: number,
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
    const session = NativeSession.create(prepared.model, { provider, intraOpThreads: run.intraOpThreads });
    const pastNames: string[] = [];
    const presentNames: string[] = [];
    for (let layer = 0; layer < config.layerCount; layer++) {
      for (const kind of ['key', 'value'] as const) {
        pastNames.push(`past_${kind}.${layer}`);
        presentNames.push(presentOutputName(kind, layer));
      }
    }
    const elementType = prepared.cacheType;
    try {
      session.allocateCache({
        pastNames,
        presentNames,
        rows: layout.maxSequences,
        keyValueHeads: config.keyValueHeadCount,
        slots: layout.maxModelLen + 1,
        headDim: config.headDim,
        elementType,
      });
    } catch (error) {
      session.release();
      throw new NativeSessionError(`native session: the KV cache could not be allocated: ${(error as Error).message}`);
    }
    const bytesPerSlot = 2 * config.layerCount * config.keyValueHeadCount * config.headDim * (elementType === 'float32' ? 4 : 2);
    return new NativeKvStore(session, elementType, bytesPerSlot, config.vocabSize);
  }

  /** Nothing to feed: the session binds the cache rows itself. */
  async pastFeeds(): Promise<CacheFeeds> {
    return {};
  }

  async run(feeds: CacheFeeds, slots: SequenceSlots, plan: BatchPlan): Promise<{ logits: Float32Array; transferBytes: number }> {
    const S = plan.sequenceLength;
    const batch = plan.rows.length;
    // seqlens_k from the row owners' lengths, fillers included: that is where the op writes each row's new key.
    const seqlens = Int32Array.from({ length: batch }, (_, b) => slots.lengthOfRow(plan.firstRow + b) + S - 1);
    const withLengths: Record<string, Feed> = {
      ...(feeds as Record<string, Feed>),
      seqlens_k: { type: 'int32', data: seqlens, dims: [batch] },
      total_sequence_length: { type: 'int32', data: Int32Array.of(Math.max(...seqlens) + 1), dims: [] },
    };
    const logitsRows = withLengths.logits_index.dims[0];
    const needed = logitsRows * this.vocabSize;
    if (this.logits.length < needed) this.logits = new Float32Array(needed);
    let transferBytes = needed * 4;
    const list = Object.entries(withLengths).map(([name, feed]) => {
      transferBytes += feed.data.byteLength;
      return { name, ...feed };
    });
    await this.session.run({ feeds: list, logitsName: 'logits', logits: this.logits, logitsRows, vocab: this.vocabSize, firstRow: plan.firstRow, batch });
    // A copy: the buffer is reused by the next run while the caller may still hold these rows.
    return { logits: this.logits.slice(0, needed), transferBytes };
  }

  resize(): void {
    // The cache was allocated at full length; the layout's capacity is only how far it reads.
  }

  fork(_sourceId: number, _forkId: number, copy: RowCopy): void {
    this.session.copyRow(copy.from, copy.to, copy.validSlots);
  }

  release(_sequenceId: number, move: RowCopy | null): void {
    if (move) this.session.copyRow(move.from, move.to, move.validSlots);
  }

  summary(): string {
    return `KV cache: ${(this.session.cacheBytes / 2 ** 20).toFixed(1)} MiB allocated once in the native session, bound in place (shared-buffer GQA)`;
  }

  async dispose(): Promise<void> {
    this.session.release();
  }
}
