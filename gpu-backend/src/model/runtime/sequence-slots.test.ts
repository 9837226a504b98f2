// The layout arithmetic against the file header's worked example (W = 4): slots, write slots, masks,
// time order; capacity growth and shrink; row compaction and forks.

import { describe, expect, it } from 'vitest';
import { SequenceSlots } from './sequence-slots';

const slotsOf = (slidingWindow: number | null, maxModelLen = 100, maxSequences = 3) => new SequenceSlots({ slidingWindow, maxSequences, maxModelLen });
/** visibleKeys as the header draws masks: 0 where seen, '-' where masked. */
const drawn = (rows: boolean[][]) => rows.map((row) => row.map((seen) => (seen ? 0 : '-')));

describe('SequenceSlots', () => {
  it('W = 4: position p lives in slot p mod 3 and the slots hold the newest W - 1 positions', () => {
    const kv = slotsOf(4);
    expect(kv.ringSlots).toBe(3);
    expect([0, 1, 2, 3, 4, 5].map((p) => kv.slotOf(p))).toEqual([0, 1, 2, 0, 1, 2]);
    expect([0, 1, 2].map((slot) => kv.positionInSlot(4, slot))).toEqual([3, 1, 2]);
    expect([0, 1, 2].map((slot) => kv.positionInSlot(5, slot))).toEqual([3, 4, 2]);
    expect([0, 1, 2].map((slot) => kv.positionInSlot(1, slot))).toEqual([0, -1, -1]);
    expect(kv.validSlots(1000)).toBe(3);
    expect(kv.isWrapped(3)).toBe(false);
    expect(kv.isWrapped(4)).toBe(true);
  });

  it('worked example: decode masks, a chunk that overflows the ring, time order', () => {
    const kv = slotsOf(4);
    expect(kv.capacity).toBe(3);
    expect(drawn(kv.visibleKeys(5, 1, 3))).toEqual([[0, 0, 0, 0]]); // p=5 over positions [3, 4, 2, 5]
    expect(drawn(kv.visibleKeys(3, 1, 3))).toEqual([[0, 0, 0, 0]]);
    expect(drawn(kv.visibleKeys(1, 1, 3))).toEqual([[0, '-', '-', 0]]);
    // A chunk of 4 at length 4: positions 4..7 land in slots [1, 2, 0, 1]; the first is dropped.
    expect([0, 1, 2, 3].map((t) => kv.writeSlot(4, t, 4))).toEqual([-1, 2, 0, 1]);
    expect([0, 1, 2].map((t) => kv.writeSlot(4, t, 3))).toEqual([1, 2, 0]);
    // Query 4 + s sees past slots within the window and new tokens t <= s; slots hold [3, 1, 2].
    expect(drawn(kv.visibleKeys(4, 4, 3))).toEqual([
      [0, 0, 0, 0, '-', '-', '-'], // p=4 sees 1, 2, 3 + 4
      [0, '-', 0, 0, 0, '-', '-'], // p=5 sees 2, 3 + 4, 5
      [0, '-', '-', 0, 0, 0, '-'], // p=6 sees 3 + 4, 5, 6
      ['-', '-', '-', 0, 0, 0, 0], // p=7 sees 4, 5, 6, 7
    ]);
    expect(kv.timeOrderedSlots(5)).toEqual([2, 0, 1]); // positions 2, 3, 4
    expect(kv.timeOrderedSlots(2)).toEqual([0, 1]);
  });

  it('without a window every position keeps its own slot and the capacity grows by doubling in steps of 64, then shrinks', () => {
    const kv = slotsOf(null, 1000);
    expect([0, 1, 2, 3].map((t) => kv.writeSlot(70, t, 4))).toEqual([70, 71, 72, 73]);
    const id = kv.create();
    expect(kv.capacity).toBe(64);
    expect(kv.ensureFits(64)).toBe(false);
    expect(kv.ensureFits(65)).toBe(true);
    expect(kv.capacity).toBe(128);
    kv.ensureFits(200);
    expect(kv.capacity).toBe(256);
    kv.ensureFits(700);
    expect(kv.capacity).toBe(704);
    kv.ensureFits(705);
    expect(kv.capacity).toBe(1000); // doubling, capped by maxModelLen
    const short = kv.create();
    kv.advance(short, 1);
    kv.advance(id, 700);
    expect(kv.release(id)).toEqual({ move: { from: 1, to: 0, validSlots: 1 }, freedRow: 1, resized: true }); // the long one leaves: the short row moves down
    expect(kv.capacity).toBe(64);
    expect(kv.row(short)).toBe(0);
  });

  it("'step' growth follows the longest live sequence in 64-slot steps, both ways", () => {
    const kv = new SequenceSlots({ slidingWindow: null, maxSequences: 3, maxModelLen: 3000, growth: 'step' });
    const [long, short] = [kv.create(), kv.create()];
    kv.ensureFits(2000);
    expect(kv.capacity).toBe(2048);
    expect(kv.ensureFits(2049)).toBe(true);
    expect(kv.capacity).toBe(2112); // doubling would read 4096 slots per row here
    kv.advance(long, 2049);
    kv.advance(short, 130);
    expect(kv.release(long).resized).toBe(true);
    expect(kv.capacity).toBe(192); // back to what the short one needs, not only below a quarter
    expect(kv.release(kv.fork(short).id).resized).toBe(false);
    kv.ensureFits(2990);
    expect(kv.capacity).toBe(3000); // 3008 capped by the slot limit
    const ring = new SequenceSlots({ slidingWindow: 4, maxSequences: 1, maxModelLen: 100, growth: 'step' });
    expect([ring.capacity, ring.ensureFits(50), ring.capacity]).toEqual([3, false, 3]);
    const wrapped = new SequenceSlots({ slidingWindow: 4, maxSequences: 2, maxModelLen: 100 });
    const ringed = wrapped.create();
    wrapped.advance(ringed, 10);
    expect(wrapped.fork(ringed).copy).toEqual({ from: 0, to: 1, validSlots: 3 }); // a wrapped ring row holds W - 1 keys, not 10
  });

  it('release moves the last row into the hole; a fork takes the old row and the source the new top row', () => {
    const kv = slotsOf(null);
    const [a, b, c] = [kv.create(), kv.create(), kv.create()];
    for (const id of [a, b, c]) kv.advance(id, 1);
    kv.advance(c, 4);
    expect(kv.release(a)).toEqual({ move: { from: 2, to: 0, validSlots: 5 }, freedRow: 2, resized: false });
    expect(kv.row(c)).toBe(0);
    expect([kv.lengthOfRow(0), kv.lengthOfRow(1), kv.lengthOfRow(2)]).toEqual([5, 1, 0]); // row 2 is free now
    const { id: forked, copy } = kv.fork(b);
    expect(copy).toEqual({ from: 1, to: 2, validSlots: 1 });
    expect(kv.length(forked)).toBe(1);
    expect([kv.row(forked), kv.row(b)]).toEqual([1, 2]);
    expect(kv.release(b)).toEqual({ move: null, freedRow: 2, resized: false }); // the top row: nothing moves
    expect(kv.slotsUsed()).toBe(6);
    kv.fork(forked);
    expect(() => kv.create()).toThrow(/no free/);
    expect(() => kv.length(b)).toThrow(/unknown sequence/);
  });

  it('forks a prefix exactly without a window, or with one while the ring has not wrapped, and never past the source', () => {
    const flat = slotsOf(null);
    const long = flat.create();
    flat.advance(long, 40);
    expect(flat.length(flat.fork(long, 17).id)).toBe(17);
    expect(() => flat.fork(long, 41)).toThrow(/cannot be forked at 41/);
    const ring = slotsOf(4); // R = 3
    const [unwrapped, wrapped] = [ring.create(), ring.create()];
    ring.advance(unwrapped, 3);
    ring.advance(wrapped, 4); // position 3 took slot 0 from position 0, which a prefix of 1..3 attends to
    expect([1, 2, 3].map((length) => ring.prefixIsExact(3, length))).toEqual([true, true, true]);
    expect([1, 2, 3, 4].map((length) => ring.prefixIsExact(4, length))).toEqual([false, false, false, true]);
    expect(ring.length(ring.fork(unwrapped, 2).id)).toBe(2);
    expect(() => ring.fork(wrapped, 3)).toThrow(/cannot be forked at 3/);
    expect(ring.liveCount).toBe(3); // the refused fork took no row
  });

  it('a ring longer than maxModelLen never wraps: the slot limit is the smaller', () => {
    expect(SequenceSlots.slotLimitOf({ slidingWindow: 4096, maxModelLen: 512 })).toBe(512);
    expect(SequenceSlots.slotLimitOf({ slidingWindow: 8, maxModelLen: 512 })).toBe(7);
    expect(slotsOf(4096, 512).slotsMax()).toBe(3 * 512);
    expect(() => slotsOf(1)).toThrow(/too small/);
  });

  it('draft slots (W = 4, k_max = 2): a rejected verification loses no key the next token sees', () => {
    const kv = new SequenceSlots({ slidingWindow: 4, maxSequences: 1, maxModelLen: 100, draftSlots: 2 });
    expect(kv.ringSlots).toBe(5);
    const id = kv.create();
    kv.advance(id, 6);
    expect([0, 1, 2, 3, 4].map((slot) => kv.positionInSlot(6, slot))).toEqual([5, 1, 2, 3, 4]);
    // Verify p=6 with drafts at 7, 8: slots 1, 2, 3; then both drafts are rejected.
    expect([0, 1, 2].map((t) => kv.writeSlot(6, t, 3))).toEqual([1, 2, 3]);
    kv.advance(id, 3);
    kv.truncate(id, 7);
    // p=7 must see 4, 5, 6 (slots 4, 0, 1, never overwritten) and nothing else: slots 2, 3 hold stale 7, 8.
    expect(drawn(kv.visibleKeys(7, 1, 5))).toEqual([[0, 0, '-', '-', 0, 0]]);
    expect(() => kv.truncate(id, 4)).toThrow(/exceeds the 2 draft slots/);
    expect(() => kv.truncate(id, 8)).toThrow(/cannot be cut/);
    expect(SequenceSlots.slotLimitOf({ slidingWindow: 4, maxModelLen: 100, draftSlots: 2 })).toBe(5);
  });
});
