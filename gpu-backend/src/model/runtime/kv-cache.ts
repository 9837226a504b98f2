// The KV cache: one row per live sequence, per layer one key and one value buffer
// [row, kvHead, slot, headDim], fed to session.run as zero-copy views; plus the rolling-buffer arithmetic.
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
//
// Fused path (GroupQueryAttention) masks by cache index, so decode (one new key, all R past keys
// visible) can use the ring as is, but a prefill chunk of S > 1 needs its past in time order: the
// engine feeds timeOrderedPast() (an R-slot copy, once per chunk) when the ring has wrapped. (On the
// CPU, fused graphs decode through the in-place branch, which masks by slot position like the
// unfused path; GQA decode remains for gqaDecode / WebGPU.) Why not the
// 1.30 `sliding_window_cache` attribute: it needs the present buffer fetched back (a full-cache copy
// per step in onnxruntime-node) and rejects ragged first-prompt batches.
//
// Memory is flat: a windowed sequence never holds more than R = W - 1 slots per layer (capacity is
// the slack-free bound; the attention op's own present buffer holds W). Without a window the capacity
// grows with the longest live sequence (doubling, in CAPACITY_STEP multiples), up to maxModelLen.
//
// Reserved mode (`reserve`): every buffer is allocated and written once at its largest size
// (maxSequences rows at the slot limit), as vLLM reserves its KV blocks, and a capacity change only
// re-lays the live rows out inside it. Growing then never allocates or faults fresh pages while streams
// decode (lazy growth 1024 -> 2048 slots on the 125M bench shape with 9 live rows took 1.1-1.6 s, mostly
// first touches of 1 GB of new memory). The capacity still follows the longest live sequence because the
// in-place decode path reads every slot of a row up to it.

export type CacheArray = Float32Array | Uint16Array;

export interface KvCacheOptions {
  layerCount: number;
  keyValueHeadCount: number;
  headDim: number;
  slidingWindow: number | null;
  maxSequences: number;
  maxModelLen: number;
  elementType: 'float32' | 'float16';
  /** Allocate and touch all memory up front (maxSequences * slot limit); default false (grow on demand). */
  reserve?: boolean;
}

const CAPACITY_STEP = 64;

interface SequenceState {
  row: number;
  length: number;
}

export class KvCache {
  /** Persistent slots per row with a window (W - 1), null without one. */
  readonly ringSlots: number | null;
  /** Allocated slots per row; the third dim of every buffer. */
  capacity = 0;
  keys: CacheArray[] = []; // per layer [maxSequences, kvHead, capacity, headDim]
  values: CacheArray[] = []; // per layer [maxSequences, kvHead, capacity, headDim]
  /** Reserved mode: the full-size buffers that keys/values are prefix views of. */
  private arenas: { keys: CacheArray[]; values: CacheArray[] } | null = null;
  private readonly sequences = new Map<number, SequenceState>();
  private readonly rowOwners: number[] = []; // sequence id per used row, rows kept dense from 0
  private nextId = 1;

  constructor(readonly options: KvCacheOptions) {
    const { slidingWindow } = options;
    if (slidingWindow !== null && slidingWindow < 2) throw new Error(`sliding window ${slidingWindow} is too small (need >= 2)`);
    this.ringSlots = slidingWindow === null ? null : slidingWindow - 1;
    if (options.reserve) this.reserveArenas();
    this.allocate(Math.min(CAPACITY_STEP, this.slotLimit()));
  }

  /**
   * Most slots a row ever needs: the ring (W - 1) or maxModelLen, whichever is smaller (a ring longer
   * than any allowed sequence never wraps).
   */
  static slotLimitOf(options: Pick<KvCacheOptions, 'slidingWindow' | 'maxModelLen'>): number {
    return options.slidingWindow === null ? options.maxModelLen : Math.min(options.slidingWindow - 1, options.maxModelLen);
  }

  /** Bytes all buffers take at their largest: what reserved mode allocates at construction. */
  static reservedBytes(options: KvCacheOptions): number {
    const element = options.elementType === 'float32' ? 4 : 2;
    return 2 * options.layerCount * options.maxSequences * options.keyValueHeadCount * KvCache.slotLimitOf(options) * options.headDim * element;
  }

  get reserved(): boolean {
    return this.arenas !== null;
  }

  private reserveArenas(): void {
    const { layerCount, keyValueHeadCount, headDim, maxSequences } = this.options;
    const length = maxSequences * keyValueHeadCount * this.slotLimit() * headDim;
    const arena = () => this.newArray(length).fill(0); // fill: fault every page in now, not mid-step
    this.arenas = { keys: Array.from({ length: layerCount }, arena), values: Array.from({ length: layerCount }, arena) };
  }

  /** Elements of one row in one layer buffer. */
  get rowStride(): number {
    return this.options.keyValueHeadCount * this.capacity * this.options.headDim;
  }

  get liveCount(): number {
    return this.rowOwners.length;
  }

  private slotLimit(): number {
    return KvCache.slotLimitOf(this.options);
  }

  private newArray(length: number): CacheArray {
    return this.options.elementType === 'float32' ? new Float32Array(length) : new Uint16Array(length);
  }

  /** (Re)allocates every buffer with `capacity` slots per row, keeping the used rows' contents. */
  private allocate(capacity: number): void {
    if (this.arenas) return this.relayout(capacity);
    const { layerCount, keyValueHeadCount, headDim, maxSequences } = this.options;
    const old = { keys: this.keys, values: this.values, capacity: this.capacity };
    this.capacity = capacity;
    this.keys = [];
    this.values = [];
    for (let layer = 0; layer < layerCount; layer++) {
      for (const [target, source] of [
        [this.keys, old.keys[layer]],
        [this.values, old.values[layer]],
      ] as const) {
        const array = this.newArray(maxSequences * keyValueHeadCount * capacity * headDim);
        if (source) {
          // Copy the old [row, kvHead, slot, headDim] blocks slot-range by slot-range. Valid slots are
          // always a prefix [0, n): shrinking keeps the first `capacity` (callers ensure n fits).
          const kept = Math.min(old.capacity, capacity) * headDim;
          for (let rowHead = 0; rowHead < this.rowOwners.length * keyValueHeadCount; rowHead++) {
            const from = rowHead * old.capacity * headDim;
            array.set(source.subarray(from, from + kept) as never, rowHead * capacity * headDim);
          }
        }
        target.push(array);
      }
    }
  }

  /**
   * Reserved mode: the used rows' [kvHead, slot, headDim] blocks move to the new row stride inside the
   * same buffers, last block first when growing (each block's new offset is at or past its old one, so
   * no block overwrites one not yet moved) and first block first when shrinking. Slots past a row's valid
   * prefix keep stale values; every reader masks or skips them.
   */
  private relayout(capacity: number): void {
    const { keyValueHeadCount, headDim, maxSequences } = this.options;
    const old = this.capacity;
    const blocks = this.rowOwners.length * keyValueHeadCount;
    const kept = Math.min(old, capacity) * headDim;
    const move = (array: CacheArray, block: number) => array.copyWithin(block * capacity * headDim, block * old * headDim, block * old * headDim + kept);
    const arenas = [...this.arenas!.keys, ...this.arenas!.values];
    if (old > 0 && capacity !== old) {
      for (const array of arenas) {
        if (capacity > old) for (let block = blocks - 1; block >= 0; block--) move(array, block);
        else for (let block = 0; block < blocks; block++) move(array, block);
      }
    }
    this.capacity = capacity;
    const length = maxSequences * keyValueHeadCount * capacity * headDim;
    this.keys = this.arenas!.keys.map((array) => array.subarray(0, length));
    this.values = this.arenas!.values.map((array) => array.subarray(0, length));
  }

  /**
   * Grows the buffers so a sequence of `length` tokens fits its valid slots. Growth at least doubles
   * (every growth copies all rows: fixed steps would make a long generation quadratic in copies).
   */
  ensureFits(length: number): void {
    const needed = Math.min(length, this.slotLimit());
    if (needed <= this.capacity) return;
    const grown = Math.max(Math.ceil(needed / CAPACITY_STEP) * CAPACITY_STEP, 2 * this.capacity);
    this.allocate(Math.min(this.slotLimit(), grown));
  }

  create(): number {
    if (this.rowOwners.length >= this.options.maxSequences) throw new Error('no free KV cache row');
    const id = this.nextId++;
    this.sequences.set(id, { row: this.rowOwners.length, length: 0 });
    this.rowOwners.push(id);
    return id;
  }

  /**
   * The copy takes a new (top) row, and since both rows then hold the same data the two ids swap rows:
   * the source keeps decoding from the top row, the fork (a prefix snapshot, idle) keeps the old one.
   * Decode runs span a range of rows, so this keeps a prompt that a snapshot was just taken from beside
   * the streams admitted with it instead of in a low row behind idle snapshots (measured on the
   * 125M bench shape at 2048 slots: its first decode step with 4 streams 156 ms, spanning 8 rows whose
   * fresh pages fault on first read, against 55 ms over the 5 adjacent rows).
   */
  fork(sourceId: number): number {
    const source = this.state(sourceId);
    const id = this.create();
    const target = this.state(id);
    target.length = source.length;
    this.copyRow(source.row, target.row);
    [source.row, target.row] = [target.row, source.row];
    this.rowOwners[source.row] = sourceId;
    this.rowOwners[target.row] = id;
    return id;
  }

  /** Frees the row; the last row moves into the hole so live rows stay dense (decode batches are views). */
  release(sequenceId: number): void {
    const { row } = this.state(sequenceId);
    const lastRow = this.rowOwners.length - 1;
    if (row !== lastRow) {
      this.copyRow(lastRow, row);
      const movedId = this.rowOwners[lastRow];
      this.rowOwners[row] = movedId;
      this.state(movedId).row = row;
    }
    this.rowOwners.pop();
    this.sequences.delete(sequenceId);
    this.shrinkIfSparse();
  }

  /**
   * The in-place attention path reads every allocated slot of a row (masked or not), so a capacity
   * left behind by a long sequence that is gone would slow every later step: give it back once the
   * longest live sequence needs a quarter of it or less (the factor keeps grow/shrink from thrashing).
   */
  private shrinkIfSparse(): void {
    let longest = 0;
    for (const state of this.sequences.values()) longest = Math.max(longest, this.validSlots(state.length));
    const target = Math.max(CAPACITY_STEP, Math.ceil(longest / CAPACITY_STEP) * CAPACITY_STEP);
    if (this.capacity >= 4 * target) this.allocate(Math.min(target, this.slotLimit()));
  }

  private copyRow(from: number, to: number): void {
    const stride = this.rowStride;
    for (const array of [...this.keys, ...this.values]) array.copyWithin(to * stride, from * stride, (from + 1) * stride);
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
   * Stores the new keys/values of `count` tokens at positions [start, start + count) of a sequence.
   * `newKeys` is the graph output [batch, sequence, kvHead * headDim]; this sequence is batch entry `batchIndex`.
   */
  write(sequenceId: number, layer: number, newKeys: CacheArray, newValues: CacheArray, batchIndex: number, sequenceLength: number, count: number): void {
    const { keyValueHeadCount, headDim } = this.options;
    const state = this.state(sequenceId);
    const rowBase = state.row * this.rowStride;
    const width = keyValueHeadCount * headDim;
    // Only the newest R positions survive in a ring: skip the ones that would be overwritten.
    const first = this.ringSlots === null ? 0 : Math.max(0, count - this.ringSlots);
    for (let t = first; t < count; t++) {
      const slot = this.slotOf(state.length + t);
      const from = (batchIndex * sequenceLength + t) * width;
      for (let head = 0; head < keyValueHeadCount; head++) {
        const to = rowBase + (head * this.capacity + slot) * headDim;
        const source = from + head * headDim;
        this.keys[layer].set(newKeys.subarray(source, source + headDim) as never, to);
        this.values[layer].set(newValues.subarray(source, source + headDim) as never, to);
      }
    }
  }

  advance(sequenceId: number, count: number): void {
    this.state(sequenceId).length += count;
  }

  /** Rows [firstRow, firstRow + rowCount) of a layer buffer: a zero-copy [rowCount, kvHead, capacity, headDim] view. */
  rowsView(array: CacheArray, firstRow: number, rowCount: number): CacheArray {
    return array.subarray(firstRow * this.rowStride, (firstRow + rowCount) * this.rowStride);
  }

  /** The valid slots of one sequence oldest first: [1, kvHead, validSlots, headDim] (a copy). */
  timeOrderedPast(sequenceId: number, array: CacheArray): { data: CacheArray; slots: number } {
    const { keyValueHeadCount, headDim } = this.options;
    const state = this.state(sequenceId);
    const slots = this.validSlots(state.length);
    const out = this.newArray(keyValueHeadCount * slots * headDim);
    const rowBase = state.row * this.rowStride;
    for (let head = 0; head < keyValueHeadCount; head++) {
      for (let i = 0; i < slots; i++) {
        const slot = this.slotOf(state.length - slots + i);
        const from = rowBase + (head * this.capacity + slot) * headDim;
        out.set(array.subarray(from, from + headDim) as never, (head * slots + i) * headDim);
      }
    }
    return { data: out, slots };
  }

  /** Bytes of K and V for one slot, all layers. */
  bytesPerSlot(): number {
    const { layerCount, keyValueHeadCount, headDim, elementType } = this.options;
    return 2 * layerCount * keyValueHeadCount * headDim * (elementType === 'float32' ? 4 : 2);
  }

  slotsUsed(): number {
    let used = 0;
    for (const state of this.sequences.values()) used += this.validSlots(state.length);
    return used;
  }

  /** Slots allocated right now (all rows); the most it can reach is maxSequences * slot limit. */
  slotsAllocated(): number {
    return this.options.maxSequences * (this.arenas ? this.slotLimit() : this.capacity);
  }

  slotsMax(): number {
    return this.options.maxSequences * this.slotLimit();
  }
}
