// Where the KV cache lives, apart from its layout (SequenceSlots). The engine has one run path whatever
// the store: pastFeeds -> buildFeeds -> run (which keeps the new keys/values); the layout's changes
// (capacity, forks, row compaction) are handed to the store as they happen. Three implementations:
// HostKvStore (host arrays fed as views, new keys/values fetched and written back: CPU, CUDA),
// ResidentKvStore (tensors that stay in device memory between steps: WebGPU) and NativeKvStore (the
// native session's cache, bound in place as GQA's past and present: --runtime native, CPU, CUDA).
// kv-store-loader.ts picks one.
//
// The store owns the session: where the cache lives decides what a run feeds and fetches.

import type { AttentionKind } from '../graph/graph-attention';
import type { BatchPlan } from './engine-feeds';
import type { DeviceTensor, Feed } from './ort-session';
import type { RowCopy, SequenceSlots } from './sequence-slots';

export type CacheFeeds = Record<string, Feed | DeviceTensor>;

export interface KvStore {
  /** The attention implementation of the graph the store's session runs. */
  readonly attention: AttentionKind;
  readonly elementType: 'float32' | 'float16';
  /** Bytes of K and V for one token slot, all layers. */
  readonly bytesPerSlot: number;
  /** A capacity change re-lays rows out in place (no allocation): the layout then grows in steps (SequenceSlots' 'step'). */
  readonly resizesInPlace: boolean;
  /** The cache inputs of one run of `plan` (`slots` as it stands before the run). */
  pastFeeds(slots: SequenceSlots, plan: BatchPlan): Promise<CacheFeeds>;
  /**
   * Runs the model on `feeds` (buildFeeds' inputs plus pastFeeds) and keeps every real row's new
   * keys/values at the slots `slots` assigns them; the lengths are advanced by the caller afterwards.
   * Returns the logits rows ([rows wanted, vocabSize], flat) and the bytes moved host<->device.
   */
  run(feeds: CacheFeeds, slots: SequenceSlots, plan: BatchPlan): Promise<{ logits: Float32Array; transferBytes: number }>;
  /** The layout's capacity changed (grown or shrunk); rows [0, liveRows) keep their contents. */
  resize(capacity: number, liveRows: number): void;
  /** `forkId` starts as a copy of `sourceId`; in the dense host layout that is `copy`. */
  fork(sourceId: number, forkId: number, copy: RowCopy): void;
  /**
   * `sequenceId` left; `move` is the row compaction the layout made (null when it held the top row), and
   * `freedRow` the row left empty after it.
   */
  release(sequenceId: number, move: RowCopy | null, freedRow: number): void;
  /** One line for the start-up log. */
  summary(): string;
  /** Bytes the cache occupies now, where that differs from its reservation (the native session's host cache). */
  residentBytes?(): number;
  dispose(): Promise<void>;
}
