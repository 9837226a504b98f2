// Host KV memory driven by the layout (SequenceSlots) the way the engine drives it: contents survive
// rolling writes, growth, shrink, forks and row compaction; reserved mode holds what the growing
// buffers hold; and every write and gather agrees with a naive per-sequence copy.

import { describe, expect, it } from 'vitest';
import { type CacheArray, HostKvBuffers, type HostKvBuffersOptions } from './host-kv-buffers';
import { HostKvStore } from './host-kv-store';
import type { OrtSession } from './ort-session';
import { type CapacityGrowth, SequenceSlots } from './sequence-slots';

type HarnessOptions = Omit<HostKvBuffersOptions, 'slotLimit'> & { slidingWindow: number | null; maxModelLen: number; growth?: CapacityGrowth };

/** Slots + buffers with the layout's changes applied through HostKvStore, as Engine applies them (no session needed). */
class HostKv {
  readonly slots: SequenceSlots;
  readonly buffers: HostKvBuffers;
  private readonly store: HostKvStore;

  constructor(options: HarnessOptions) {
    this.slots = new SequenceSlots(options);
    this.buffers = new HostKvBuffers({ ...options, slotLimit: this.slots.slotLimit }, this.slots.capacity);
    this.store = new HostKvStore(null as unknown as OrtSession, this.buffers, 'hybrid', 'cpu');
  }

  get capacity(): number {
    return this.slots.capacity;
  }
  get keys(): CacheArray[] {
    return this.buffers.keys;
  }
  get values(): CacheArray[] {
    return this.buffers.values;
  }
  get reserved(): boolean {
    return this.buffers.reserved;
  }
  create = () => this.slots.create();
  row = (id: number) => this.slots.row(id);
  length = (id: number) => this.slots.length(id);
  advance = (id: number, count: number) => this.slots.advance(id, count);
  ensureFits(length: number): void {
    if (this.slots.ensureFits(length)) this.store.resize(this.slots.capacity, this.slots.liveCount);
  }
  fork(sourceId: number): number {
    const { id, copy } = this.slots.fork(sourceId);
    this.store.fork(sourceId, id, copy);
    return id;
  }
  release(id: number): void {
    const { move, resized } = this.slots.release(id);
    this.store.release(id, move);
    if (resized) this.store.resize(this.slots.capacity, this.slots.liveCount);
  }
  /** `count` new tokens of one sequence, batch entry `batchIndex` of a [batch, sequenceLength, kvHead * headDim] output. */
  write(id: number, layer: number, keys: CacheArray, values: CacheArray, batchIndex: number, sequenceLength: number, count: number): void {
    const length = this.slots.length(id);
    const slots = Array.from({ length: count }, (_, t) => this.slots.writeSlot(length, t, count));
    this.buffers.write(this.slots.row(id), layer, keys, values, batchIndex, sequenceLength, slots);
  }
  timeOrderedPast(id: number, array: CacheArray): { data: CacheArray; slots: number } {
    const order = this.slots.timeOrderedSlots(this.slots.length(id));
    return { data: this.buffers.gather(array, this.slots.row(id), order), slots: order.length };
  }
}

function cache(slidingWindow: number | null, maxModelLen = 100): HostKv {
  return new HostKv({ layerCount: 1, keyValueHeadCount: 2, headDim: 2, slidingWindow, maxSequences: 3, maxModelLen, elementType: 'float32' });
}

describe('HostKvBuffers driven by SequenceSlots', () => {
  it('writes keep only the newest W - 1 positions; timeOrderedPast returns them oldest first', () => {
    const kv = cache(4);
    const id = kv.create();
    kv.ensureFits(7);
    expect(kv.capacity).toBe(3);
    // 7 tokens, 2 kv heads x headDim 2: value = position * 10 + head
    const newKeys = new Float32Array(7 * 4).map((_, i) => Math.floor(i / 4) * 10 + Math.floor((i % 4) / 2));
    kv.write(id, 0, newKeys, newKeys, 0, 7, 7);
    kv.advance(id, 7);
    const { data, slots } = kv.timeOrderedPast(id, kv.keys[0]);
    expect(slots).toBe(3);
    expect(Array.from(data)).toEqual([40, 40, 50, 50, 60, 60, 41, 41, 51, 51, 61, 61]); // [kvHead, slot, headDim]
  });

  it('without a window the capacity grows to the longest sequence only, keeping contents', () => {
    const kv = cache(null, 1000);
    const id = kv.create();
    expect(kv.capacity).toBe(64);
    kv.write(id, 0, Float32Array.of(1, 2, 3, 4), Float32Array.of(1, 2, 3, 4), 0, 1, 1);
    kv.advance(id, 1);
    kv.ensureFits(65);
    expect(kv.capacity).toBe(128);
    kv.ensureFits(200);
    expect(kv.capacity).toBe(256);
    kv.ensureFits(700);
    expect(kv.capacity).toBe(704);
    kv.ensureFits(705);
    expect(kv.capacity).toBe(1000); // doubling, capped by maxModelLen
    expect(Array.from(kv.timeOrderedPast(id, kv.keys[0]).data)).toEqual([1, 2, 3, 4]);
    const short = kv.create();
    kv.write(short, 0, Float32Array.of(5, 6, 7, 8), Float32Array.of(5, 6, 7, 8), 0, 1, 1);
    kv.advance(short, 1);
    kv.advance(id, 700);
    kv.release(id); // the long one leaves: capacity shrinks back, the short row keeps its contents
    expect(kv.capacity).toBe(64);
    expect(Array.from(kv.timeOrderedPast(short, kv.keys[0]).data)).toEqual([5, 6, 7, 8]);
  });

  it('release moves the last row into the hole; fork copies a row', () => {
    const kv = cache(null);
    const [a, b, c] = [kv.create(), kv.create(), kv.create()];
    for (const [id, value] of [
      [a, 1],
      [b, 2],
      [c, 3],
    ] as const) {
      kv.write(id, 0, new Float32Array(4).fill(value), new Float32Array(4).fill(value), 0, 1, 1);
      kv.advance(id, 1);
    }
    kv.release(a);
    expect(kv.row(c)).toBe(0);
    expect(Array.from(kv.timeOrderedPast(c, kv.keys[0]).data)).toEqual([3, 3, 3, 3]);
    const forked = kv.fork(b);
    expect(kv.length(forked)).toBe(1);
    expect(Array.from(kv.timeOrderedPast(forked, kv.values[0]).data)).toEqual([2, 2, 2, 2]);
    // The source moves to the new top row, the fork keeps its old one; both still read their data.
    expect([kv.row(forked), kv.row(b)]).toEqual([1, 2]);
    expect(Array.from(kv.timeOrderedPast(b, kv.keys[0]).data)).toEqual([2, 2, 2, 2]);
    kv.write(b, 0, new Float32Array(4).fill(9), new Float32Array(4).fill(9), 0, 1, 1);
    kv.advance(b, 1);
    expect(Array.from(kv.timeOrderedPast(forked, kv.keys[0]).data)).toEqual([2, 2, 2, 2]);
    expect(Array.from(kv.timeOrderedPast(b, kv.keys[0]).data)).toEqual([2, 2, 9, 9, 2, 2, 9, 9]);
    kv.release(forked); // the hole left by the snapshot is filled by the top row: b keeps its contents
    expect(kv.row(b)).toBe(1);
    expect(Array.from(kv.timeOrderedPast(b, kv.keys[0]).data)).toEqual([2, 2, 9, 9, 2, 2, 9, 9]);
    kv.fork(b);
    expect(() => kv.create()).toThrow(/no free/);
  });

  it('reserved mode allocates once and holds exactly what the growing cache holds through grow, shrink, fork and release', () => {
    const options = {
      layerCount: 2,
      keyValueHeadCount: 4,
      headDim: 3,
      slidingWindow: null,
      maxSequences: 4,
      maxModelLen: 600,
      elementType: 'float32',
    } as const;
    const lazy = new HostKv(options);
    const reserved = new HostKv({ ...options, reserve: true });
    expect(reserved.reserved).toBe(true);
    expect(reserved.keys[0].buffer.byteLength).toBe(HostKvBuffers.reservedBytes({ ...options, slotLimit: options.maxModelLen }) / 4);
    const buffers = [...reserved.keys, ...reserved.values].map((array) => array.buffer);
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const ids: [number, number][] = []; // [lazy id, reserved id]
    const width = options.keyValueHeadCount * options.headDim;
    const append = (pair: [number, number], count: number) => {
      const length = lazy.length(pair[0]);
      lazy.ensureFits(length + count);
      reserved.ensureFits(length + count);
      for (let layer = 0; layer < options.layerCount; layer++) {
        const keys = Float32Array.from({ length: count * width }, () => random());
        const values = Float32Array.from({ length: count * width }, () => random());
        lazy.write(pair[0], layer, keys, values, 0, count, count);
        reserved.write(pair[1], layer, keys, values, 0, count, count);
      }
      lazy.advance(pair[0], count);
      reserved.advance(pair[1], count);
    };
    const expectSame = () => {
      expect(reserved.capacity).toBe(lazy.capacity);
      for (const [a, b] of ids) {
        expect(reserved.row(b)).toBe(lazy.row(a));
        for (let layer = 0; layer < options.layerCount; layer++) {
          expect(reserved.timeOrderedPast(b, reserved.keys[layer]).data).toEqual(lazy.timeOrderedPast(a, lazy.keys[layer]).data);
          expect(reserved.timeOrderedPast(b, reserved.values[layer]).data).toEqual(lazy.timeOrderedPast(a, lazy.values[layer]).data);
        }
      }
    };
    const capacities = new Set<number>();
    for (let step = 0; step < 60; step++) {
      const choice = random();
      if (ids.length < 4 && (ids.length === 0 || choice < 0.25)) ids.push([lazy.create(), reserved.create()]);
      else if (choice < 0.35 && ids.length > 1) {
        const [a, b] = ids.splice(Math.floor(random() * ids.length), 1)[0];
        lazy.release(a);
        reserved.release(b);
      } else if (choice < 0.45 && ids.length < 4) {
        const [a, b] = ids[Math.floor(random() * ids.length)];
        ids.push([lazy.fork(a), reserved.fork(b)]);
      } else {
        const pair = ids[Math.floor(random() * ids.length)];
        append(pair, Math.min(1 + Math.floor(random() * 90), options.maxModelLen - lazy.length(pair[0])));
      }
      capacities.add(lazy.capacity);
      expectSame();
    }
    expect(capacities.size).toBeGreaterThan(2); // the walk grew the capacity several times
    // A shrink with several live rows: a long sequence between two short ones leaves.
    for (const [a, b] of ids.splice(0)) {
      lazy.release(a);
      reserved.release(b);
    }
    const rows: [number, number][] = [0, 1, 2].map(() => [lazy.create(), reserved.create()]);
    ids.push(...rows);
    rows.forEach((pair, i) => append(pair, [10, 400, 20][i]));
    expect(lazy.capacity).toBeGreaterThanOrEqual(400);
    expectSame();
    const [longA, longB] = rows[1];
    lazy.release(longA);
    reserved.release(longB);
    ids.splice(1, 1);
    expect(lazy.capacity).toBe(64);
    expectSame();
    expect([...reserved.keys, ...reserved.values].map((array) => array.buffer)).toEqual(buffers); // never reallocated
    // The arena spans every row at the slot limit (what slotsAllocated() reported).
    expect(reserved.keys[0].buffer.byteLength / 4 / (options.keyValueHeadCount * options.headDim)).toBe(options.maxSequences * options.maxModelLen);
  });
});

describe('HostKvBuffers against a naive copy', () => {
  it.each([
    ['window 6, growing', 6, false],
    ['window 6, reserved', 6, true],
    ['no window, growing', null, false],
    ['no window, reserved', null, true],
  ] as const)('every live sequence reads back its newest valid positions, oldest first: %s', (_, slidingWindow, reserve) => {
    // Growth as the engine pairs it: in steps over reserved arenas, doubling over growing buffers.
    const growth = reserve ? 'step' : 'double';
    const options = {
      layerCount: 2,
      keyValueHeadCount: 2,
      headDim: 3,
      slidingWindow,
      maxSequences: 4,
      maxModelLen: 300,
      elementType: 'float32',
      reserve,
      growth,
    } as const;
    const kv = new HostKv(options);
    const width = options.keyValueHeadCount * options.headDim;
    // The naive copy: per sequence, per layer, every position's key and value vector [kvHead * headDim].
    const naive = new Map<number, { keys: number[][]; values: number[][] }[]>();
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const pick = () => [...naive.keys()][Math.floor(random() * naive.size)];
    for (let step = 0; step < 80; step++) {
      const choice = random();
      if (naive.size === 0 || (choice < 0.2 && naive.size < 4)) {
        naive.set(
          kv.create(),
          [0, 1].map(() => ({ keys: [], values: [] })),
        );
      } else if (choice < 0.3 && naive.size < 4) {
        const source = pick();
        naive.set(
          kv.fork(source),
          naive.get(source)!.map((layer) => ({ keys: [...layer.keys], values: [...layer.values] })),
        );
      } else if (choice < 0.4 && naive.size > 1) {
        const id = pick();
        kv.release(id);
        naive.delete(id);
      } else {
        const id = pick();
        const count = Math.min(1 + Math.floor(random() * 40), options.maxModelLen - kv.length(id));
        if (count === 0) continue;
        kv.ensureFits(kv.length(id) + count);
        // The sequence is batch entry 1 of a 2-entry output, as a row of a decode batch would be.
        for (let layer = 0; layer < options.layerCount; layer++) {
          const keys = Float32Array.from({ length: 2 * count * width }, () => Math.round(random() * 1000));
          const values = Float32Array.from({ length: 2 * count * width }, () => Math.round(random() * 1000));
          kv.write(id, layer, keys, values, 1, count, count);
          for (let t = 0; t < count; t++) {
            const at = (count + t) * width;
            naive.get(id)![layer].keys.push(Array.from(keys.subarray(at, at + width)));
            naive.get(id)![layer].values.push(Array.from(values.subarray(at, at + width)));
          }
        }
        kv.advance(id, count);
      }
      for (const [id, layers] of naive) {
        const kept = kv.slots.validSlots(kv.length(id));
        layers.forEach((layer, index) => {
          for (const [array, vectors] of [
            [kv.keys[index], layer.keys],
            [kv.values[index], layer.values],
          ] as const) {
            const newest = vectors.slice(vectors.length - kept);
            // [kvHead, slot, headDim] from per-position [kvHead * headDim] vectors.
            const expected = Array.from({ length: options.keyValueHeadCount }, (_, head) =>
              newest.flatMap((vector) => vector.slice(head * options.headDim, (head + 1) * options.headDim)),
            ).flat();
            expect(Array.from(kv.timeOrderedPast(id, array).data)).toEqual(expected);
          }
        });
      }
    }
  });
});
