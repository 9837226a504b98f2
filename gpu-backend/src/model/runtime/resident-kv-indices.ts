// Bookkeeping for the resident KV cache (the WebGPU path): which cache row of the resident tensors each
// sequence owns, and the per-run index inputs that read its past and write its new keys/values there.
// Pure arithmetic over SequenceSlots' lengths and ring slots, so it is tested without a GPU.
//
// The resident cache per layer is one tensor [rows, kvHead, slots, headDim] that the graph updates with
// ScatterND and returns; it is fed back the next step. Slot numbers are SequenceSlots' (position p in
// slot p mod (W - 1) with a window), plus one scratch slot (the last) that is never read: filler rows and
// ring overflow (a chunk longer than the ring) write there, so no ScatterND index is written twice with
// a value that matters. Worked example, W = 4 (ring 3), 4 allocated slots (scratch = 3), one sequence in
// resident row 2 at length 5 decoding position 5: cache_rows [2], cache_slots [0, 1, 2] (ring order,
// the engine's mask marks which hold what), write index [[2, head, 5 mod 3 = 2]] per head.

import type { BatchPlan } from './engine-feeds';
import type { SequenceSlots } from './sequence-slots';

export interface ResidentIndices {
  /** Resident row read for each batch entry: [batch] */
  rows: BigInt64Array;
  /** Slots read for every batch entry, in the order the past is fed: [pastSlots] */
  slots: BigInt64Array;
  /** ScatterND indices (row, kvHead, slot) for each new token: [batch, sequence, kvHead, 3] */
  writeIndex: BigInt64Array;
}

/** Resident rows of live sequences; rows never move (unlike the host store's dense rows), freed rows are reused. */
export class ResidentRowTable {
  private readonly rowOfSequence = new Map<number, number>();
  private readonly freeRows: number[] = [];
  private rowCount = 0;
  /** Rows to fill before the next run: target row <- source row (forks). */
  readonly pendingCopies: { target: number; source: number }[] = [];

  /** One past the highest row in use (or a pending copy's source): the resident tensors need this many rows. */
  get highWater(): number {
    return this.rowCount;
  }

  has(sequenceId: number): boolean {
    return this.rowOfSequence.has(sequenceId);
  }

  rowOf(sequenceId: number): number {
    const row = this.rowOfSequence.get(sequenceId);
    if (row === undefined) throw new Error(`sequence ${sequenceId} has no resident row`);
    return row;
  }

  assign(sequenceId: number): number {
    const existing = this.rowOfSequence.get(sequenceId);
    if (existing !== undefined) return existing;
    const row = this.freeRows.length > 0 ? this.freeRows.pop()! : this.rowCount++;
    this.rowOfSequence.set(sequenceId, row);
    return row;
  }

  /** `targetId` starts as a copy of `sourceId` (the copy is made on the device before the next run). */
  fork(sourceId: number, targetId: number): void {
    const source = this.rowOf(sourceId);
    this.pendingCopies.push({ target: this.assign(targetId), source });
  }

  /** Frees the rows of sequences the layout no longer knows (released between steps). */
  collect(isLive: (sequenceId: number) => boolean): void {
    for (const [sequenceId, row] of this.rowOfSequence) {
      if (isLive(sequenceId)) continue;
      this.rowOfSequence.delete(sequenceId);
      this.freeRows.push(row);
      // A fork of a released source that never ran still needs its copy, so pending copies stay.
    }
    // Free rows at the top are dropped, so the resident tensors (copied whole every step) can shrink.
    const pendingSources = new Set(this.pendingCopies.map((copy) => copy.source));
    while (this.rowCount > 0 && this.freeRows.includes(this.rowCount - 1) && !pendingSources.has(this.rowCount - 1)) {
      this.freeRows.splice(this.freeRows.indexOf(this.rowCount - 1), 1);
      this.rowCount--;
    }
  }

  /** Row sources for a resize/copy pass over `rows` rows: identity except forked rows. */
  takeRowSources(rows: number): BigInt64Array {
    const sources = BigInt64Array.from({ length: rows }, (_, row) => BigInt(row));
    for (const { target, source } of this.pendingCopies) sources[target] = BigInt(source);
    this.pendingCopies.length = 0;
    return sources;
  }
}

/**
 * Index inputs for one run of `plan` (rows of the plan as the engine builds them, fillers included).
 * `slotCount` is the resident tensors' slot dimension; its last slot is the scratch slot. The past is
 * padded with scratch slots to `minPastSlots`: a GroupQueryAttention whose past is an intermediate
 * value gets its present allocated in the past's buffer (shared-buffer mode), which must then hold
 * every key of the run (valid past + new tokens).
 */
export function residentIndices(
  plan: BatchPlan,
  layout: SequenceSlots,
  table: ResidentRowTable,
  keyValueHeadCount: number,
  slotCount: number,
  minPastSlots = 0,
): ResidentIndices {
  const { rows: planRows, sequenceLength: S } = plan;
  const B = planRows.length;
  const scratch = slotCount - 1;
  if (scratch < layout.capacity) throw new Error(`resident cache has ${slotCount} slots, the layout needs ${layout.capacity} + 1`);
  const firstReal = planRows.find((row) => row.sequenceId !== null);
  if (!firstReal) throw new Error('a batch needs at least one sequence');
  const fillerRow = table.rowOf(firstReal.sequenceId!);
  const rows = BigInt64Array.from(planRows, (row) => BigInt(row.sequenceId === null ? fillerRow : table.rowOf(row.sequenceId)));

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
