// Index arithmetic for the resident KV cache (the WebGPU path): the per-run inputs that read a plan's
// past from the resident tensors and write its new keys/values there, and the row/slot sources of a
// re-layout pass. Rows and slots are SequenceSlots' (the layout owns who holds which row); this file
// only turns them into tensor indices, so it is tested without a GPU.
//
// The resident cache per layer is one tensor [rows, kvHead, slots, headDim]: row r is the layout's row
// r, slot s its slot s (position p in slot p mod (W - 1) with a window), plus one scratch slot (the last)
// that is never read: filler rows and ring overflow (a chunk longer than the ring) write there, so no
// ScatterND index is written twice with a value that matters. Worked example, W = 4 (ring 3), capacity
// 3 (scratch = 3), the sequence in row 2 at length 5 decoding position 5: cache_rows [2], cache_slots
// [0, 1, 2] (ring order, the engine's mask marks which hold what), write index [[2, head, 5 mod 3 = 2]]
// per head.

import type { BatchPlan } from './engine-feeds';
import type { RowCopy, SequenceSlots } from './sequence-slots';

export interface ResidentIndices {
  /** Resident row read for each batch entry: [batch] */
  rows: BigInt64Array;
  /** Slots read for every batch entry, in the order the past is fed: [pastSlots] */
  slots: BigInt64Array;
  /** ScatterND indices (row, kvHead, slot) for each new token: [batch, sequence, kvHead, 3] */
  writeIndex: BigInt64Array;
}

/**
 * Index inputs for one run of `plan` (rows of the plan as the engine builds them, fillers included:
 * the layout's rows [firstRow, firstRow + batch), as the host store feeds them). `slotCount` is the
 * resident tensors' slot dimension; its last slot is the scratch slot. The past is padded with scratch
 * slots to `minPastSlots`: a GroupQueryAttention whose past is an intermediate value gets its present
 * allocated in the past's buffer (shared-buffer mode), which must then hold every key of the run
 * (valid past + new tokens).
 */
export function residentIndices(plan: BatchPlan, layout: SequenceSlots, keyValueHeadCount: number, slotCount: number, minPastSlots = 0): ResidentIndices {
  const { rows: planRows, sequenceLength: S } = plan;
  const B = planRows.length;
  const scratch = slotCount - 1;
  if (scratch < layout.capacity) throw new Error(`resident cache has ${slotCount} slots, the layout needs ${layout.capacity} + 1`);
  const firstReal = planRows.find((row) => row.sequenceId !== null);
  if (!firstReal) throw new Error('a batch needs at least one sequence');
  const rows = BigInt64Array.from(planRows, (_, b) => BigInt(plan.firstRow + b));

  let slots: BigInt64Array;
  if (plan.timeOrdered) {
    // The same order as the host store's time-ordered past: the valid slots oldest first.
    slots = BigInt64Array.from(layout.timeOrderedSlots(layout.length(firstReal.sequenceId!)), BigInt);
  } else {
    slots = BigInt64Array.from({ length: layout.capacity }, (_, slot) => BigInt(slot));
  }
  if (slots.length < minPastSlots) {
    const padded = new BigInt64Array(minPastSlots).fill(BigInt(scratch));
    padded.set(slots);
    slots = padded;
  }

  const writeIndex = new BigInt64Array(B * S * keyValueHeadCount * 3);
  planRows.forEach((row, b) => {
    const length = row.sequenceId === null ? 0 : layout.length(row.sequenceId);
    // Only the newest ring-size tokens of a chunk survive (writeSlot -1); those and fillers go to scratch.
    for (let t = 0; t < S; t++) {
      const kept = row.sequenceId === null ? -1 : layout.writeSlot(length, t, S);
      const slot = kept >= 0 ? kept : scratch;
      for (let head = 0; head < keyValueHeadCount; head++) {
        const at = ((b * S + t) * keyValueHeadCount + head) * 3;
        writeIndex[at] = rows[b];
        writeIndex[at + 1] = BigInt(head);
        writeIndex[at + 2] = BigInt(slot);
      }
    }
  });
  return { rows, slots, writeIndex };
}

/**
 * Where each layout row's keys/values are in the resident tensors while the layout's row moves (forks,
 * compaction after a release) wait for the next re-layout pass. The layout reports moves synchronously;
 * the pass is a device run, made before the next step (ResidentKvStore.pastFeeds). A row that no
 * recorded copy filled (created since, or left by a released sequence) holds whatever its tensor row
 * held: its sequence has length 0, and every attention path masks or bounds a row by its length.
 */
export class ResidentRowSources {
  /** sources[r]: the tensor row that holds layout row r's contents; rows past the end hold their own. */
  private sources: number[] = [];

  /** Layout row `copy.to` now holds what row `copy.from` holds (a fork, or the top row filling a hole). */
  copy({ from, to }: RowCopy): void {
    const source = this.sourceOf(from);
    while (this.sources.length <= to) this.sources.push(this.sources.length);
    this.sources[to] = source;
  }

  /**
   * Row sources for a pass over `rows` layout rows out of a tensor of `tensorRows` rows (a row past the
   * tensor's end takes row 0: its contents are never read), or null when the tensor's rows are already
   * the layout's. The sources then restart as the identity.
   */
  take(rows: number, tensorRows: number): number[] | null {
    const sources = Array.from({ length: rows }, (_, row) => {
      const source = this.sourceOf(row);
      return source < tensorRows ? source : 0;
    });
    this.sources = [];
    const identity = rows === tensorRows && sources.every((source, row) => source === row);
    return identity ? null : sources;
  }

  private sourceOf(row: number): number {
    return row < this.sources.length ? this.sources[row] : row;
  }
}
