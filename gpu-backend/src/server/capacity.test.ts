import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING } from '../../../shared/protocol';
import { createBackendApp } from './app';
import { Capacity, QueueCapacity, type Reservation } from './capacity';
import { FakeEngine } from './fake-engine';
import { GenerationClient } from './generation-client';
import { Prng } from './prng';
import { Scheduler } from './scheduler';
import { readEvents, StepGate } from './test-support';

/** The invariant, checked against the engine's own count of rows in use (an independent tally). */
function expectInvariant(capacity: Capacity, engine: FakeEngine): void {
  const { rows, live, snapshots, free, choices } = capacity.usage();
  expect(free).toBeGreaterThanOrEqual(0);
  expect(choices).toBeLessThanOrEqual(capacity.limits.maxRunning);
  expect(engine.freeSequences()).toBe(rows - live - snapshots);
}

function counts(capacity: Capacity) {
  const { live, promised, snapshots, free } = capacity.usage();
  return { live, promised, snapshots, free };
}

function setup(rows: number, maxRunning: number, prefixCacheSize = 0) {
  const engine = new FakeEngine({ maxSequences: rows });
  return { engine, capacity: new Capacity(engine, { maxRunning, prefixCacheSize, prefixBlockTokens: 1 }) };
}

describe('Capacity', () => {
  it('follows the worked numbers of its header', () => {
    const { engine, capacity } = setup(8, 16, 2);
    const a = capacity.reserve(3);
    const aFirst = capacity.takeRow(a, null);
    expect(counts(capacity)).toEqual({ live: 1, promised: 2, snapshots: 0, free: 5 });
    capacity.snapshot([5, 6, 7], 3, aFirst);
    expect(counts(capacity)).toEqual({ live: 1, promised: 2, snapshots: 1, free: 4 });
    expect(capacity.canAdmit(4)).toBe(true);
    capacity.takeRow(capacity.reserve(4), null);
    expect(counts(capacity)).toEqual({ live: 2, promised: 5, snapshots: 1, free: 0 });
    expectInvariant(capacity, engine);
    expect(capacity.canAdmit(1)).toBe(true);
    capacity.takeRow(capacity.reserve(1), null);
    expect(counts(capacity)).toEqual({ live: 3, promised: 5, snapshots: 0, free: 0 });
    expect(capacity.canAdmit(1)).toBe(false);
    capacity.takeRow(a, aFirst);
    capacity.takeRow(a, aFirst);
    expect(counts(capacity)).toEqual({ live: 5, promised: 3, snapshots: 0, free: 0 });
    expectInvariant(capacity, engine);
  });

  it('refuses a request when the choice slots are taken, however many rows are free', () => {
    const { capacity } = setup(8, 2);
    capacity.reserve(2);
    expect(capacity.usage().free).toBe(6);
    expect(capacity.canAdmit(1)).toBe(false);
    expect(() => capacity.reserve(1)).toThrow(/without room/);
  });

  it('evicts snapshots, least recently used first, before it refuses a request; refusing evicts nothing', () => {
    const { engine, capacity } = setup(4, 8, 2);
    const holder = capacity.reserve(1);
    const row = capacity.takeRow(holder, null);
    capacity.snapshot([1, 2], 2, row);
    capacity.snapshot([3, 4], 2, row);
    expect(capacity.prefixCache.lookup([1, 2, 9], 2)).not.toBeNull(); // [1, 2] is now the more recent one
    expect(counts(capacity)).toEqual({ live: 1, promised: 0, snapshots: 2, free: 1 });
    expect(capacity.canAdmit(4)).toBe(false);
    expect(capacity.usage().snapshots).toBe(2);
    capacity.reserve(2);
    expect(counts(capacity)).toEqual({ live: 1, promised: 2, snapshots: 1, free: 0 });
    expect(capacity.prefixCache.lookup([1, 2, 9], 2)).not.toBeNull();
    expect(capacity.prefixCache.lookup([3, 4, 9], 2)).toBeNull();
    expectInvariant(capacity, engine);
  });

  it('keeps a snapshot only on a row nobody was promised (an LRU swap in a full cache counts as one)', () => {
    const { engine, capacity } = setup(3, 3, 1);
    const all = capacity.reserve(3);
    const first = capacity.takeRow(all, null);
    capacity.snapshot([1, 2], 2, first);
    expect(capacity.usage().snapshots).toBe(0);
    capacity.takeRow(all, first);
    capacity.takeRow(all, first); // the engine would throw EngineCapacityError had a snapshot taken a promised row
    expectInvariant(capacity, engine);

    const swap = setup(4, 4, 1);
    const one = swap.capacity.reserve(1);
    swap.capacity.snapshot([1, 2], 2, swap.capacity.takeRow(one, null));
    const two = swap.capacity.reserve(2);
    const twoFirst = swap.capacity.takeRow(two, null);
    expect(counts(swap.capacity)).toEqual({ live: 2, promised: 1, snapshots: 1, free: 0 });
    swap.capacity.snapshot([3, 4], 2, twoFirst);
    expect(swap.capacity.prefixCache.lookup([3, 4, 9], 2)).not.toBeNull();
    expect(swap.capacity.prefixCache.lookup([1, 2, 9], 2)).toBeNull();
    swap.capacity.takeRow(two, twoFirst);
    expectInvariant(swap.capacity, swap.engine);
  });

  it('releases balance: each choice gives back its row, or the promise it never turned into one', () => {
    const { engine, capacity } = setup(8, 8);
    const cancelled = capacity.reserve(3); // cancelled mid-prefill: one row, two promised forks
    capacity.release(cancelled, capacity.takeRow(cancelled, null));
    capacity.release(cancelled, -1);
    capacity.release(cancelled, -1);
    expect(capacity.usage()).toEqual({ rows: 8, live: 0, promised: 0, snapshots: 0, free: 8, choices: 0 });
    expect(engine.freeSequences()).toBe(8);
    expect(() => capacity.release(cancelled, -1)).toThrow(/beyond what was reserved/);
    const other = capacity.reserve(1);
    expect(() => capacity.release(other, 999)).toThrow(/not this reservation's/);
    capacity.takeRow(other, null);
    expect(() => capacity.release(other, -1)).toThrow(/released no promise/);
    expect(() => capacity.takeRow(other, null)).toThrow(/beyond what was reserved/);
  });

  it('a finished row turns into a snapshot in place, evicting the least recently used; one the cache refuses is released', async () => {
    const { engine, capacity } = setup(4, 4, 2);
    const request = capacity.reserve(3);
    const rows = [capacity.takeRow(request, null), capacity.takeRow(request, null), capacity.takeRow(request, null)];
    await engine.step(rows.map((sequenceId, i) => ({ sequenceId, tokenIds: [7, 8, 9 + i] })));
    capacity.retire(request, rows[0], [7, 8, 9, 40]); // the row holds 3 ids: the last sampled one was never fed
    expect(counts(capacity)).toEqual({ live: 2, promised: 0, snapshots: 1, free: 1 });
    expect(engine.freeSequences()).toBe(1); // no copy: the same row
    capacity.retire(request, rows[1], [7, 8, 10, 41]);
    expect(capacity.prefixCache.lookup([7, 8, 9, 40, 1], 4)).toEqual({ engineId: rows[0], length: 3 });
    capacity.retire(request, rows[2], [7, 8, 11, 42]); // the cache is full: [7, 8, 10] is the least recently used
    expect(capacity.prefixCache.lookup([7, 8, 10, 5], 3)!.length).toBe(2);
    expect(counts(capacity)).toEqual({ live: 0, promised: 0, snapshots: 2, free: 2 });
    const again = capacity.reserve(1);
    const row = capacity.takeRow(again, null);
    await engine.step([{ sequenceId: row, tokenIds: [7, 8, 11] }]);
    capacity.retire(again, row, [7, 8, 11, 3]); // the same ids are cached already: released
    expect(capacity.usage()).toEqual({ rows: 4, live: 0, promised: 0, snapshots: 2, free: 2, choices: 0 });
    expectInvariant(capacity, engine);
  });

  it('holds its invariant through 3000 random admissions, forks, snapshots and releases', () => {
    const { engine, capacity } = setup(12, 10, 3);
    const prng = new Prng(42);
    const pick = (length: number) => Math.floor(prng.nextFloat() * length);
    const held: { reservation: Reservation; rows: number[] }[] = [];
    for (let op = 0; op < 3000; op++) {
      const kind = pick(4);
      if (kind === 0) {
        const n = 1 + pick(4);
        if (capacity.canAdmit(n)) held.push({ reservation: capacity.reserve(n), rows: [] });
        else expect(() => capacity.reserve(n)).toThrow();
      } else if (held.length > 0) {
        const entry = held[pick(held.length)];
        const { reservation, rows } = entry;
        if (kind === 1 && reservation.promised > 0) rows.push(capacity.takeRow(reservation, rows.length > 0 ? rows[0] : null));
        else if (kind === 2 && rows.length > 0) capacity.snapshot([pick(5), pick(5)], 2, rows[pick(rows.length)]);
        else if (kind === 3 && reservation.choices > 0) {
          const withRow = rows.length > 0 && (reservation.promised === 0 || pick(2) === 0);
          const row = withRow ? rows.splice(pick(rows.length), 1)[0] : -1;
          if (pick(2) === 0) capacity.release(reservation, row);
          else capacity.retire(reservation, row, [pick(5), pick(5), pick(5)]);
          if (reservation.choices === 0) held.splice(held.indexOf(entry), 1);
        }
      }
      expectInvariant(capacity, engine);
    }
    for (const { reservation, rows } of held) while (reservation.choices > 0) capacity.release(reservation, rows.pop() ?? -1);
    expect(counts(capacity)).toEqual({ live: 0, promised: 0, snapshots: capacity.prefixCache.size, free: 12 - capacity.prefixCache.size });
    capacity.prefixCache.clear();
    expect(engine.freeSequences()).toBe(12);
  });
});

describe('Capacity through the scheduler: the paths that once needed a fix-up', () => {
  const request = (id: number, length: number, n: number) => ({
    id,
    tokenIds: Array.from({ length }, (_, i) => 3 + ((i * 7 + id) % 60)),
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens: 4, n, seed: id },
  });

  async function harness() {
    let failNext = false;
    const engine = new FakeEngine({
      beforeStep: async () => {
        if (failNext) {
          failNext = false;
          throw new Error('device lost');
        }
      },
    });
    const scheduler = new Scheduler(
      engine,
      { maxRunning: 4, maxBatchedTokens: 8, prefixCacheSize: 0, prefixBlockTokens: 4, prefillStallFactor: 0, prefillMinTokens: 8 },
      () => {},
    );
    /** Every slot and row is back: a request of maxRunning choices is admitted and forked at once. */
    const expectAllBack = async () => {
      expect(scheduler.capacity.usage()).toEqual({ rows: 8, live: 0, promised: 0, snapshots: 0, free: 8, choices: 0 });
      scheduler.submit(request(99, 3, 4));
      await scheduler.step();
      expect(scheduler.running.length).toBe(4);
      while (await scheduler.step());
      expect(engine.freeSequences()).toBe(8);
    };
    return { scheduler, expectAllBack, failNextStep: () => (failNext = true) };
  }

  it('cancel mid-prefill (n = 3) and while waiting (n = 2)', async () => {
    const { scheduler, expectAllBack } = await harness();
    scheduler.submit(request(1, 40, 3));
    scheduler.submit(request(2, 3, 2));
    await scheduler.step();
    expect(scheduler.capacity.usage()).toMatchObject({ live: 1, promised: 2, choices: 3 });
    expect(scheduler.waiting.length).toBe(1);
    scheduler.cancel(1);
    scheduler.cancel(2);
    await scheduler.step();
    await expectAllBack();
  });

  it('an engine error in the step that admitted a prompt (n = 3)', async () => {
    const { scheduler, expectAllBack, failNextStep } = await harness();
    scheduler.submit(request(1, 40, 3));
    failNextStep();
    await scheduler.step();
    await expectAllBack();
  });
});

describe('QueueCapacity and the generation client', () => {
  const clients: GenerationClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  });

  it('bounds accepted choices; a second release of one id gives back nothing', () => {
    const queue = new QueueCapacity(3);
    queue.reserve(1, 2);
    expect(queue.canAdmit(2)).toBe(false);
    expect(() => queue.reserve(2, 2)).toThrow(/without room/);
    queue.reserve(2, 1);
    queue.release(1);
    queue.release(1);
    expect(queue.choices).toBe(1);
  });

  it('a client gone mid-stream and an engine error give their choices back to the queue', async () => {
    const gate = new StepGate();
    let failNext = false;
    const engine = new FakeEngine({
      vocabSize: 64,
      beforeStep: async () => {
        await gate.wait();
        if (failNext) {
          failNext = false;
          throw new Error('device lost');
        }
      },
    });
    const limits = { maxRunning: 2, maxQueue: 0, prefixCacheSize: 0 };
    const client = GenerationClient.inProcess({ engine: { kind: 'fake', options: {} }, limits }, engine);
    clients.push(client);
    const app = createBackendApp({ client });
    await client.whenReady();
    const generate = (id: string) =>
      app.request('/v1/generate', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ requestId: id, tokenIds: [1, 5, 7], sampling: { maxTokens: 50, ignoreEos: true, n: 2 }, stream: true }),
      });
    const gone = await generate('gone');
    const reader = gone.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('event: token');
    gate.close();
    expect((await generate('refused')).status).toBe(503); // 2 of 2 choices accepted
    await reader.cancel();
    gate.open();
    await client.idle();
    expect(client.metrics.render()).toContain('backend_requests_total{outcome="abort"} 1');
    failNext = true;
    const failed = await generate('failed');
    expect(failed.status).toBe(200);
    expect((await readEvents(failed)).at(-1)!.event).toBe('error');
    const served = await generate('served');
    expect(served.status).toBe(200);
    expect((await readEvents(served)).at(-1)!.event).toBe('end');
    expect(engine.freeSequences()).toBe(8);
  });
});
