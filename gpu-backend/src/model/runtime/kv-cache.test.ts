// The rolling-buffer arithmetic of the file header's worked example, row compaction and forks.

import { describe, expect, it } from 'vitest';
import { KvCache } from './kv-cache';

function cache(slidingWindow: number | null, maxModelLen = 100): KvCache {
  return new KvCache({ layerCount: 1, keyValueHeadCount: 2, headDim: 2, slidingWindow, maxSequences: 3, maxModelLen, elementType: 'float32' });
}

describe('KvCache', () => {
  it('W = 4: position p lives in slot p mod 3 and the slots hold the newest W - 1 positions', () => {
    const kv = cache(4);
    expect(kv.ringSlots).toBe(3);
    expect([0, 1, 2, 3, 4, 5].map((p) => kv.slotOf(p))).toEqual([0, 1, 2, 0, 1, 2]);
    expect([0, 1, 2].map((slot) => kv.positionInSlot(4, slot))).toEqual([3, 1, 2]);
    expect([0, 1, 2].map((slot) => kv.positionInSlot(5, slot))).toEqual([3, 4, 2]);
    expect([0, 1, 2].map((slot) => kv.positionInSlot(1, slot))).toEqual([0, -1, -1]);
    expect(kv.validSlots(1000)).toBe(3);
    expect(kv.isWrapped(3)).toBe(false);
    expect(kv.isWrapped(4)).toBe(true);
  });

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
    const lazy = new KvCache(options);
    const reserved = new KvCache({ ...options, reserve: true });
    expect(reserved.reserved).toBe(true);
    expect(reserved.keys[0].buffer.byteLength).toBe(KvCache.reservedBytes(options) / 4);
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
    expect(reserved.slotsAllocated()).toBe(options.maxSequences * options.maxModelLen);
  });
});
