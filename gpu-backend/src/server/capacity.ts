// Where capacity is decided: every engine row (a KV cache sequence) and every running-choice slot is
// taken and given back here, and nowhere else counts them. The invariant, on the engine thread:
//
//   choices <= maxRunning   and   live + promised + snapshots <= rows
//
// live: rows held by running choices; promised: rows owed to admitted choices that have none yet (a
// request of n choices prefills its prompt once, then forks it n - 1 times); snapshots: prefix-cache
// rows (prompt heads forked during prefill, finished sequences kept by retire), the only ones taken back on demand. canAdmit(n) asks for n choice slots and n rows, counting
// snapshots as free; reserve(n) evicts least-recently-used snapshots until n rows are free and promises
// them; takeRow fulfils one promise; a snapshot is kept only on a row nobody was promised.
// Worked numbers, 8 rows, maxRunning 16. A (n = 3) admitted: live 1, promised 2, free 5. A snapshot of
// its head: snapshots 1, free 4. B (n = 4): 4 rows free, admitted: live 2, promised 5, free 0. C (n = 1):
// no row free but one snapshot, so it is evicted and C admitted: live 3, snapshots 0. D (n = 1) waits:
// nothing to evict. A's prompt is done: 2 forks, live 5, promised 3. A choice that ends gives back its
// slot and its row, or the promise it still held (cancelled mid-prefill, engine error, client gone):
// releases balance because each one returns what its Reservation holds, never a recount.
//
// On the HTTP thread, QueueCapacity bounds what is accepted at all: choices accepted and not yet ended
// <= maxRunning + maxQueue, so about maxQueue choices wait for the engine thread's admission above.
// Sizing the rows (--max-sequences from KV memory) is kv-budget.ts; the default limits, servingLimits in ../config.ts.

import type { ModelEngine } from '../model/runtime/engine-types';
import { PrefixCache } from './prefix-cache';

export interface CapacityLimits {
  /** Choices (sequences) decoding or prefilling at once. */
  maxRunning: number;
  /** Prefix-cache snapshots kept (each is an engine row; evicted first under pressure). */
  prefixCacheSize: number;
  /** Prefix-cache reuse granularity in ids: prefixes are reused in whole blocks, so one block is the shortest. */
  prefixBlockTokens: number;
}

/** What one admitted request holds: choice slots and rows not yet given back, rows still owed to it. Only Capacity changes it. */
export class Reservation {
  readonly rows = new Set<number>();
  constructor(
    public choices: number,
    public promised: number,
  ) {}
}

export interface CapacityUsage {
  rows: number;
  live: number;
  promised: number;
  snapshots: number;
  free: number;
  choices: number;
}

export class Capacity {
  readonly prefixCache: PrefixCache;
  /** Rows the engine had free when serving began: the scheduler's to hand out. */
  readonly rows: number;
  private choices = 0;
  private live = 0;
  private promised = 0;

  constructor(
    private readonly engine: Pick<ModelEngine, 'createSequence' | 'forkSequence' | 'canForkPrefix' | 'releaseSequence' | 'freeSequences' | 'sequenceLength'>,
    readonly limits: CapacityLimits,
  ) {
    this.rows = engine.freeSequences();
    this.prefixCache = new PrefixCache(engine, limits.prefixCacheSize, limits.prefixBlockTokens);
  }

  /** Rows neither held, promised nor snapshots. */
  get freeRows(): number {
    return this.rows - this.live - this.promised - this.prefixCache.size;
  }

  usage(): CapacityUsage {
    const { rows, live, promised, choices } = this;
    return { rows, live, promised, snapshots: this.prefixCache.size, free: this.freeRows, choices };
  }

  /** Whether a request of `choices` choices fits now, once snapshots are evicted. Takes nothing. */
  canAdmit(choices: number): boolean {
    return this.choices + choices <= this.limits.maxRunning && this.freeRows + this.prefixCache.size >= choices;
  }

  /** Takes `choices` slots and promises as many rows, evicting snapshots for them; canAdmit first. */
  reserve(choices: number): Reservation {
    if (!this.canAdmit(choices)) throw new Error(`capacity: reserve(${choices}) without room (${JSON.stringify(this.usage())})`);
    while (this.freeRows < choices) this.prefixCache.evictOne();
    this.choices += choices;
    this.promised += choices;
    return new Reservation(choices, choices);
  }

  /** Fulfils one promise: a new row, or a fork of `sourceRow`'s first `length` positions (a cache hit, the prefilled first choice). */
  takeRow(reservation: Reservation, sourceRow: number | null, length?: number): number {
    if (reservation.promised === 0) throw new Error('capacity: takeRow beyond what was reserved');
    const row = sourceRow === null ? this.engine.createSequence() : this.engine.forkSequence(sourceRow, length);
    reservation.promised--;
    this.promised--;
    reservation.rows.add(row);
    this.live++;
    return row;
  }

  /**
   * A choice ended: gives back its slot and its row, or (row -1: it never got one) the promise it
   * still held. Releasing more choices than were reserved is a bug and throws.
   */
  release(reservation: Reservation, row: number): void {
    if (reservation.choices === 0) throw new Error('capacity: release beyond what was reserved');
    if (row >= 0) {
      if (!reservation.rows.delete(row)) throw new Error(`capacity: row ${row} is not this reservation's`);
      this.engine.releaseSequence(row);
      this.live--;
    } else {
      if (reservation.promised === 0) throw new Error('capacity: a choice without a row released no promise');
      reservation.promised--;
      this.promised--;
    }
    reservation.choices--;
    this.choices--;
  }

  /**
   * A choice finished whole: like release(), except that its row, holding `tokenIds` (prompt + answer;
   * the last sampled id was never fed, so the row holds one fewer), becomes a prefix-cache entry when
   * the cache takes it. A live row turns into a snapshot in place, so the rows in use stay as they were.
   */
  retire(reservation: Reservation, row: number, tokenIds: readonly number[]): void {
    const held = row >= 0 && reservation.rows.has(row) ? tokenIds.slice(0, this.engine.sequenceLength(row)) : null;
    if (!held || !this.prefixCache.accepts(held)) return this.release(reservation, row);
    reservation.rows.delete(row);
    this.live--;
    reservation.choices--;
    this.choices--;
    this.prefixCache.adopt(held, row);
  }

  /** Keeps a snapshot of `sourceRow`'s first `length` positions if a row is spare (an LRU swap counts as one). */
  snapshot(tokenIds: readonly number[], length: number, sourceRow: number): void {
    const swap = this.prefixCache.size >= this.prefixCache.capacity ? 1 : 0;
    if (this.freeRows + swap > 0) this.prefixCache.insert(tokenIds, length, sourceRow);
  }
}

/** The HTTP thread's bound: choices accepted and not yet ended, per request id. */
export class QueueCapacity {
  private readonly held = new Map<number, number>();
  private total = 0;

  constructor(readonly maxChoices: number) {}

  get choices(): number {
    return this.total;
  }

  canAdmit(choices: number): boolean {
    return this.total + choices <= this.maxChoices;
  }

  reserve(id: number, choices: number): void {
    if (!this.canAdmit(choices) || this.held.has(id)) throw new Error(`queue capacity: reserve(${id}, ${choices}) without room`);
    this.held.set(id, choices);
    this.total += choices;
  }

  /** Gives back what `id` reserved; a second release of the same id gives back nothing. */
  release(id: number): void {
    this.total -= this.held.get(id) ?? 0;
    this.held.delete(id);
  }
}
