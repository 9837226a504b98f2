// Host KV memory: per layer one key and one value buffer [row, kvHead, slot, headDim] in host memory,
// fed to session.run as zero-copy row-range views. Storage only: which row and slot hold what is
// SequenceSlots' arithmetic, passed in as row and slot numbers.
//
// Reserved mode (`reserve`): every buffer is allocated once at its largest size (maxSequences rows at
// the slot limit), as vLLM reserves its KV blocks, and a capacity change only re-lays the live rows out
// inside it, in 64-slot steps (SequenceSlots). Growing then never allocates or copies into new buffers
// while streams decode (a lazy doubling stalled every stream for over a second: docs/bench/serving.md).
// The arena is not written at reservation: pages fault in as rows fill, a 64-slot step at a time, so
// resident memory follows the KV in use, not the reservation. The capacity
// follows the longest live sequence because the in-place decode path reads every slot of a row up to it.

export type CacheArray = Float32Array | Uint16Array;

export interface HostKvBuffersOptions {
  layerCount: number;
  keyValueHeadCount: number;
  headDim: number;
  maxSequences: number;
  /** Most slots a row ever needs (SequenceSlots.slotLimit). */
  slotLimit: number;
  elementType: 'float32' | 'float16';
  /** Allocate and touch all memory up front (maxSequences * slotLimit); default false (grow on demand). */
  reserve?: boolean;
}

export class HostKvBuffers {
  /** Allocated slots per row; the third dim of every buffer. */
  capacity = 0;
  keys: CacheArray[] = []; // per layer [maxSequences, kvHead, capacity, headDim]
  values: CacheArray[] = []; // per layer [maxSequences, kvHead, capacity, headDim]
  /** Reserved mode: the full-size buffers that keys/values are prefix views of. */
  private arenas: { keys: CacheArray[]; values: CacheArray[] } | null = null;

  constructor(
    readonly options: HostKvBuffersOptions,
    capacity: number,
  ) {
    if (options.reserve) this.reserveArenas();
    this.resize(capacity, 0);
  }

  /** Bytes all buffers take at their largest: what reserved mode allocates at construction. */
  static reservedBytes(options: Omit<HostKvBuffersOptions, 'reserve'>): number {
    const element = options.elementType === 'float32' ? 4 : 2;
    return 2 * options.layerCount * options.maxSequences * options.keyValueHeadCount * options.slotLimit * options.headDim * element;
  }

  get reserved(): boolean {
    return this.arenas !== null;
  }

  /** Elements of one row in one layer buffer. */
  get rowStride(): number {
    return this.options.keyValueHeadCount * this.capacity * this.options.headDim;
  }

  private reserveArenas(): void {
    const { layerCount, keyValueHeadCount, headDim, maxSequences, slotLimit } = this.options;
    const length = maxSequences * keyValueHeadCount * slotLimit * headDim;
    const arena = () => this.newArray(length); // zeroed by the allocator, untouched: not resident until used
    this.arenas = { keys: Array.from({ length: layerCount }, arena), values: Array.from({ length: layerCount }, arena) };
  }

  newArray(length: number): CacheArray {
    return this.options.elementType === 'float32' ? new Float32Array(length) : new Uint16Array(length);
  }

  /**
   * Every buffer gets `capacity` slots per row, keeping rows [0, liveRows). Valid slots are always a
   * prefix [0, n): shrinking keeps the first `capacity` (callers ensure n fits).
   */
  resize(capacity: number, liveRows: number): void {
    if (this.arenas) return this.relayout(capacity, liveRows);
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
          // Copy the old [row, kvHead, slot, headDim] blocks slot-range by slot-range.
          const kept = Math.min(old.capacity, capacity) * headDim;
          for (let rowHead = 0; rowHead < liveRows * keyValueHeadCount; rowHead++) {
            const from = rowHead * old.capacity * headDim;
            array.set(source.subarray(from, from + kept) as never, rowHead * capacity * headDim);
          }
        }
        target.push(array);
      }
    }
  }

  /**
   * Reserved mode: the live rows' [kvHead, slot, headDim] blocks move to the new row stride inside the
   * same buffers, last block first when growing (each block's new offset is at or past its old one, so
   * no block overwrites one not yet moved) and first block first when shrinking. Slots past a row's valid
   * prefix keep stale values; every reader masks or skips them.
   */
  private relayout(capacity: number, liveRows: number): void {
    const { keyValueHeadCount, headDim, maxSequences } = this.options;
    const old = this.capacity;
    const blocks = liveRows * keyValueHeadCount;
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

  copyRow(from: number, to: number): void {
    const stride = this.rowStride;
    for (const array of [...this.keys, ...this.values]) array.copyWithin(to * stride, from * stride, (from + 1) * stride);
  }

  /**
   * Stores new keys/values of one layer in `row`: token t goes to slot `slots[t]` (-1: not kept).
   * `newKeys` is the graph output [batch, sequence, kvHead * headDim]; this row is batch entry `batchIndex`.
   */
  write(row: number, layer: number, newKeys: CacheArray, newValues: CacheArray, batchIndex: number, sequenceLength: number, slots: number[]): void {
    const { keyValueHeadCount, headDim } = this.options;
    const rowBase = row * this.rowStride;
    const width = keyValueHeadCount * headDim;
    slots.forEach((slot, t) => {
      if (slot < 0) return;
      const from = (batchIndex * sequenceLength + t) * width;
      for (let head = 0; head < keyValueHeadCount; head++) {
        const to = rowBase + (head * this.capacity + slot) * headDim;
        const source = from + head * headDim;
        this.keys[layer].set(newKeys.subarray(source, source + headDim) as never, to);
        this.values[layer].set(newValues.subarray(source, source + headDim) as never, to);
      }
    });
  }

  /** Rows [firstRow, firstRow + rowCount) of a layer buffer: a zero-copy [rowCount, kvHead, capacity, headDim] view. */
  rowsView(array: CacheArray, firstRow: number, rowCount: number): CacheArray {
    return array.subarray(firstRow * this.rowStride, (firstRow + rowCount) * this.rowStride);
  }

  /** `slots` of one row gathered in that order: [1, kvHead, slots.length, headDim] (a copy). */
  gather(array: CacheArray, row: number, slots: number[]): CacheArray {
    const { keyValueHeadCount, headDim } = this.options;
    const out = this.newArray(keyValueHeadCount * slots.length * headDim);
    const rowBase = row * this.rowStride;
    for (let head = 0; head < keyValueHeadCount; head++) {
      slots.forEach((slot, i) => {
        const from = rowBase + (head * this.capacity + slot) * headDim;
        out.set(array.subarray(from, from + headDim) as never, (head * slots.length + i) * headDim);
      });
    }
    return out;
  }
}
