// Sequence slots: the KV cache's layout, with no storage. Which row each live sequence owns (rows kept
// dense from 0), how many tokens it holds, which slot of its row each position lives in, and which slots
// a query may see. Lengths in; positions, write slots and masks out. The stores (HostKvStore,
// ResidentKvStore) keep the keys/values where this arithmetic says.
//
// Rolling buffer (sliding window W). Keys are cached after rotary, so a key's slot never affects its
// value; the attention op only needs the right SET of keys. A query at position p sees keys j with
// p - W < j <= p: the W - 1 keys before it plus its own, which the attention op appends itself. So a
// sequence keeps R = W - 1 persistent slots and position p lives in slot p mod R.
// Worked example, W = 4, R = 3 (slot contents shown as positions):
//
//   after prefill 0..2   slots [0, 1, 2]   decode p=3 sees 0,1,2 + 3 (4 keys)    then 3 -> slot 0
//   length 4             slots [3, 1, 2]   decode p=4 sees 1,2,3 + 4              then 4 -> slot 1
//   length 5             slots [3, 4, 2]   decode p=5 sees 2,3,4 + 5              then 5 -> slot 2
//
//   Unfused path mask for p=5 over [slot0, slot1, slot2, new]: positions [3, 4, 2, 5], all within
//   (5 - 4, 5], so [0, 0, 0, 0]; at length 3 decoding p=3 with capacity 3: [0, 0, 0, 0] too; at
//   length 1 decoding p=1 with capacity 3: slots hold [0, -, -]: mask [0, -inf, -inf, 0].
//   A chunk of 4 tokens at length 4 (positions 4..7) writes slots [1, 2, 0, 1]: only the newest R
//   survive, so writeSlot gives [-1, 2, 0, 1] (the first is dropped, not written twice).
//
// Fused path (GroupQueryAttention) masks by cache index, so decode (one new key, all R past keys
// visible) can use the ring as is, but a prefill chunk of S > 1 needs its past in time order: the
// engine sets plan.timeOrdered and the store feeds timeOrderedSlots (an R-slot copy, once per chunk)
// when the ring has wrapped. (On the CPU, fused graphs decode through the in-place branch, which masks
// by slot position like the unfused path; GQA decode remains for gqaDecode / WebGPU.) Why not the
// 1.30 `sliding_window_cache` attribute: it needs the present buffer fetched back (a full-cache copy
// per step in onnxruntime-node) and rejects ragged first-prompt batches.
//
// Speculative drafts (draftSlots = k_max > 0): a verification run writes 1 + k keys, and a rejection
// rolls the length back by up to k. With R = W - 1 the draft keys would overwrite the slots of the
// positions the next real token still sees, so the ring gets R = W - 1 + k_max slots: writing positions
// L..L+k overwrites at most position L + k - R <= L - W, outside every later window. Slots left by a
// rollback read as positions older than the window (or past the length), so the mask hides them.
// Worked example, W = 4, k_max = 2, R = 5, length 6 (slots hold positions [5, 1, 2, 3, 4]):
//
//   verify p=6 + drafts 7, 8   writes slots 1, 2, 3        slots [5, 6, 7, 8, 4]
//   both drafts rejected       length 7; p=7 sees 4, 5, 6 + 7: slots 4, 0, 1, all intact
//   slots 2, 3 (stale 7, 8)    read as positions 2, 3: 7 - 2 >= W, 7 - 3 >= W, masked
//
//   With R = W - 1 = 3 the same run would have written 6, 7, 8 over 3, 4, 5: position 7 loses 4 and 5.
//
// Capacity: the slots every row spans in the past the graph reads; the in-place decode path reads every
// one of them, masked or not, so it follows the longest live sequence (up to R = W - 1 with a window, the
// attention op's own present buffer holding W; up to maxModelLen without). How, depends on the store:
//   'step' (a store that re-lays rows out in place: reserved host arenas, the resident tensors): the
//     smallest CAPACITY_STEP multiple that fits the longest live sequence, growing and shrinking with it.
//     A change moves the live rows inside the same memory; at most CAPACITY_STEP - 1 slots per row are
//     read for nothing (doubling read up to 2x the live KV past 2048 tokens: 4096 slots for 2049).
//   'double' (every change allocates and copies all rows): growth at least doubles, since fixed steps
//     would make a long generation quadratic in copies, and it shrinks only once the longest live
//     sequence needs a quarter of it or less (the factor keeps grow/shrink from thrashing).

export interface SequenceSlotsOptions {
  slidingWindow: number | null;
  maxSequences: number;
  maxModelLen: number;
  /** How the capacity follows the longest live sequence (header); default 'double'. */
  growth?: CapacityGrowth;
  /** Most draft tokens one verification run writes (k_max; header): the ring grows by this many slots. Default 0. */
  draftSlots?: number;
}

export type CapacityGrowth = 'step' | 'double';

/** Storage must copy row `from` into row `to` (a fork, or the top row filling a released row's hole). */
export interface RowCopy {
  from: number;
  to: number;
  /** Slots of the row holding keys (validSlots of its length): a store may copy only those. */
  validSlots: number;
}

export const CAPACITY_STEP = 64;

interface SequenceState {
  row: number;
  length: number;
}

export class SequenceSlots {
  /** Persistent slots per row with a window (W - 1 + draftSlots), null without one. */
  readonly ringSlots: number | null;
  /** Slots every row spans right now; storage holds at least this many per row. */
  capacity: number;
  private readonly sequences = new Map<number, SequenceState>();
  private readonly rowOwners: number[] = []; // sequence id per used row, rows kept dense from 0
  private nextId = 1;

  constructor(readonly options: SequenceSlotsOptions) {
    const { slidingWindow } = options;
    if (slidingWindow !== null && slidingWindow < 2) throw new Error(`sliding window ${slidingWindow} is too small (need >= 2)`);
    this.ringSlots = slidingWindow === null ? null : slidingWindow - 1 + (options.draftSlots ?? 0);
    this.capacity = Math.min(CAPACITY_STEP, this.slotLimit);
  }

  /**
   * Most slots a row ever needs: the ring (W - 1) or maxModelLen, whichever is smaller (a ring longer
   * than any allowed sequence never wraps).
   */
  static slotLimitOf(options: Pick<SequenceSlotsOptions, 'slidingWindow' | 'maxModelLen' | 'draftSlots'>): number {
    const { slidingWindow, maxModelLen, draftSlots = 0 } = options;
    return slidingWindow === null ? maxModelLen : Math.min(slidingWindow - 1 + draftSlots, maxModelLen);
  }

  get slotLimit(): number {
    return SequenceSlots.slotLimitOf(this.options);
  }

  get liveCount(): number {
    return this.rowOwners.length;
  }

  /** Grows the capacity so a sequence of `length` tokens fits its valid slots; true when it changed (the store then re-lays its rows out). */
  ensureFits(length: number): boolean {
    const needed = Math.min(length, this.slotLimit);
    if (needed <= this.capacity) return false;
    const fitted = Math.ceil(needed / CAPACITY_STEP) * CAPACITY_STEP;
    const grown = this.options.growth === 'step' ? fitted : Math.max(fitted, 2 * this.capacity);
    this.capacity = Math.min(this.slotLimit, grown);
    return true;
  }

  create(): number {
    if (this.rowOwners.length >= this.options.maxSequences) throw new Error('no free KV cache row');
    const id = this.nextId++;
    this.sequences.set(id, { row: this.rowOwners.length, length: 0 });
    this.rowOwners.push(id);
    return id;
  }

  /**
   * A copy of the source's first `length` positions (default all; prefixIsExact says which are exact).
   * The copy takes a new (top) row, and since both rows then hold the same data the two ids swap rows:
   * the source keeps decoding from the top row, the fork (a prefix snapshot, idle) keeps the old one.
   * Decode runs span a range of rows, so this keeps a prompt that a snapshot was just taken from beside
   * the streams admitted with it instead of in a low row behind idle snapshots: a decode run spanning
   * idle rows pays for their fresh pages on first read (docs/bench/serving.md, "KV row placement on fork").
   */
  fork(sourceId: number, length = this.length(sourceId)): { id: number; copy: RowCopy } {
    const source = this.state(sourceId);
    if (!this.prefixIsExact(source.length, length)) throw new Error(`sequence ${sourceId} (${source.length} tokens) cannot be forked at ${length}`);
    const id = this.create();
    const target = this.state(id);
    target.length = length;
    // The copy is what the source keeps (the rows swap below): all of its valid slots.
    const copy = { from: source.row, to: target.row, validSlots: this.validSlots(source.length) };
    [source.row, target.row] = [target.row, source.row];
    this.rowOwners[source.row] = sourceId;
    this.rowOwners[target.row] = id;
    return { id, copy };
  }

  /**
   * Whether the first `length` positions of a sequence of `sourceLength` tokens can be forked exactly. The
   * slots past `length` are simply not read (every path masks or bounds by length), so without a window
   * any prefix can; with one, only while the ring has not wrapped: a later position overwrites the slot
   * of the position R before it, which the prefix's last positions still attend to.
   */
  prefixIsExact(sourceLength: number, length: number): boolean {
    if (!Number.isInteger(length) || length < 0 || length > sourceLength) return false;
    return length === sourceLength || this.ringSlots === null || sourceLength <= this.ringSlots;
  }

  /**
   * Frees the row; the last row moves into the hole so live rows stay dense (decode batches are row
   * ranges). `move` is that copy (made at the old capacity); `freedRow` is the row no sequence holds now
   * (the old top one); `resized` says the capacity shrank after it.
   */
  release(sequenceId: number): { move: RowCopy | null; freedRow: number; resized: boolean } {
    const { row } = this.state(sequenceId);
    const lastRow = this.rowOwners.length - 1;
    let move: RowCopy | null = null;
    if (row !== lastRow) {
      const movedId = this.rowOwners[lastRow];
      move = { from: lastRow, to: row, validSlots: this.validSlots(this.state(movedId).length) };
      this.rowOwners[row] = movedId;
      this.state(movedId).row = row;
    }
    this.rowOwners.pop();
    this.sequences.delete(sequenceId);
    return { move, freedRow: lastRow, resized: this.shrinkIfSparse() };
  }

  /** Gives capacity back: 'step' down to what the longest live sequence needs, 'double' once that is a quarter or less. */
  private shrinkIfSparse(): boolean {
    let longest = 0;
    for (const state of this.sequences.values()) longest = Math.max(longest, this.validSlots(state.length));
    const target = Math.min(Math.max(CAPACITY_STEP, Math.ceil(longest / CAPACITY_STEP) * CAPACITY_STEP), this.slotLimit);
    if (this.options.growth === 'step' ? this.capacity <= target : this.capacity < 4 * target) return false;
    this.capacity = target;
    return true;
  }

  private state(sequenceId: number): SequenceState {
    const state = this.sequences.get(sequenceId);
    if (!state) throw new Error(`unknown sequence ${sequenceId}`);
    return state;
  }

  has(sequenceId: number): boolean {
    return this.sequences.has(sequenceId);
  }

  length(sequenceId: number): number {
    return this.state(sequenceId).length;
  }

  row(sequenceId: number): number {
    return this.state(sequenceId).row;
  }

  /** Tokens held by the sequence that owns `row`; 0 for a row no sequence owns. */
  lengthOfRow(row: number): number {
    const owner = this.rowOwners[row];
    return owner === undefined ? 0 : this.state(owner).length;
  }

  advance(sequenceId: number, count: number): void {
    this.state(sequenceId).length += count;
  }

  /**
   * Rolls a sequence back to `length` (rejected draft tokens). Exact only within the draft slots: a
   * ring keeps what the next token needs for up to draftSlots positions written past it (header).
   */
  truncate(sequenceId: number, length: number): void {
    const state = this.state(sequenceId);
    const dropped = state.length - length;
    if (!Number.isInteger(length) || dropped < 0) throw new Error(`sequence ${sequenceId} (${state.length} tokens) cannot be cut to ${length}`);
    if (this.ringSlots !== null && dropped > (this.options.draftSlots ?? 0)) {
      throw new Error(`sequence ${sequenceId}: rolling back ${dropped} positions exceeds the ${this.options.draftSlots ?? 0} draft slots`);
    }
    state.length = length;
  }

  /** Slots holding keys the next token can attend to: min(length, W - 1) or length. */
  validSlots(length: number): number {
    return this.ringSlots === null ? length : Math.min(length, this.ringSlots);
  }

  slotOf(position: number): number {
    return this.ringSlots === null ? position : position % this.ringSlots;
  }

  /** The position cached in `slot` of a sequence of `length` tokens, or -1 if the slot is empty. */
  positionInSlot(length: number, slot: number): number {
    if (slot >= this.validSlots(length)) return -1;
    if (this.ringSlots === null) return slot;
    const newest = length - 1;
    return newest - ((((newest - slot) % this.ringSlots) + this.ringSlots) % this.ringSlots);
  }

  /** Whether the ring no longer holds positions in slot order (fused prefill then needs a copy). */
  isWrapped(length: number): boolean {
    return this.ringSlots !== null && length > this.ringSlots;
  }

  /**
   * Slot for new token t of a chunk of `count` at `length`, or -1 when a later token of the same chunk
   * takes it (only the newest R positions survive in a ring).
   */
  writeSlot(length: number, t: number, count: number): number {
    const firstKept = this.ringSlots === null ? 0 : Math.max(0, count - this.ringSlots);
    return t < firstKept ? -1 : this.slotOf(length + t);
  }

  /** The valid slots of a sequence of `length` tokens, oldest position first (the time-ordered past). */
  timeOrderedSlots(length: number): number[] {
    const valid = this.validSlots(length);
    return Array.from({ length: valid }, (_, i) => this.slotOf(length - valid + i));
  }

  /**
   * Which keys query s of a chunk of S at `length` may see, over [pastSlots past columns, S new]:
   * a past slot when it holds a position within the window, a new token t <= s within it. [S][pastSlots + S]
   */
  visibleKeys(length: number, S: number, pastSlots: number): boolean[][] {
    const window = this.options.slidingWindow ?? Number.POSITIVE_INFINITY;
    const slotPositions = Array.from({ length: pastSlots }, (_, slot) => this.positionInSlot(length, slot));
    return Array.from({ length: S }, (_, s) => {
      const query = length + s;
      const row = slotPositions.map((position) => position >= 0 && query - position < window);
      for (let t = 0; t < S; t++) row.push(t <= s && s - t < window);
      return row;
    });
  }

  slotsUsed(): number {
    let used = 0;
    for (const state of this.sequences.values()) used += this.validSlots(state.length);
    return used;
  }

  slotsMax(): number {
    return this.options.maxSequences * this.slotLimit;
  }
}
