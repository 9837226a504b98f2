// Prefix cache: KV rows of earlier sequences kept for reuse, matched on token ids and evicted
// least-recently-used within a budget of rows. Two kinds of entry: prompt heads forked during prefill
// (system prompts, heads shared with recent prompts, the prompt minus its last id), and finished
// sequences (prompt + answer) adopted whole, since every chat client resends the whole history and the
// next turn starts with the previous prompt and answer.
//
// What a prompt reuses of entry e (its ids, |e| of them, as the row holds them), never its last id (its
// logits start the answer) and never less than one block:
//   - all of e when e's ids begin the prompt: the row as it stands, exact whatever the window (with a
//     sliding window it carries the rolling buffer as it stood at |e|, what the positions after attend to);
//   - else the common id prefix rounded down to a whole block, when the engine can fork that prefix
//     exactly (no sliding window, or e's rolling buffer never wrapped; SequenceSlots.prefixIsExact).
// Matching is on ids, so an answer the client re-tokenized differently reuses what agrees up to the
// block before the first difference. The best entry wins; cachedTokens reports what it gave.

import type { ModelEngine } from '../model/runtime/engine-types';

interface PrefixEntry {
  tokenIds: number[];
  engineId: number;
  lastUsed: number;
}

export interface PrefixHit {
  engineId: number;
  /** Positions of the entry's row to fork (the cached tokens). */
  length: number;
}

/** How many recent prompts are compared to a new one to find a shared head worth a snapshot. */
const RECENT_PROMPTS = 32;

function sharedLength(a: readonly number[], b: readonly number[]): number {
  const limit = Math.min(a.length, b.length);
  let i = 0;
  while (i < limit && a[i] === b[i]) i++;
  return i;
}

export class PrefixCache {
  private readonly entries: PrefixEntry[] = [];
  private readonly recentPrompts: number[][] = [];
  private clock = 0;
  hits = 0;
  misses = 0;

  constructor(
    private readonly engine: Pick<ModelEngine, 'forkSequence' | 'releaseSequence' | 'canForkPrefix'>,
    readonly capacity: number,
    /** Reuse granularity in ids, and so the shortest prefix cached. */
    readonly blockTokens: number,
  ) {
    if (!Number.isInteger(blockTokens) || blockTokens < 1) throw new Error(`prefix cache block size must be a positive integer, got ${blockTokens}`);
  }

  get size(): number {
    return this.entries.length;
  }

  /** The entry reusing most of `tokenIds`, at most `maxLength` positions of it (header rule); counts a hit or a miss. */
  lookup(tokenIds: readonly number[], maxLength: number): PrefixHit | null {
    let best: PrefixHit | null = null;
    let bestEntry: PrefixEntry | null = null;
    for (const entry of this.entries) {
      const length = this.reusableLength(entry, tokenIds, maxLength);
      if (length > (best?.length ?? 0)) {
        best = { engineId: entry.engineId, length };
        bestEntry = entry;
      }
    }
    if (!best || !bestEntry) {
      this.misses++;
      return null;
    }
    this.hits++;
    bestEntry.lastUsed = ++this.clock;
    return best;
  }

  private reusableLength(entry: PrefixEntry, tokenIds: readonly number[], maxLength: number): number {
    const shared = Math.min(sharedLength(entry.tokenIds, tokenIds), maxLength);
    if (shared === entry.tokenIds.length) return shared >= this.blockTokens ? shared : 0;
    const blocks = Math.floor(shared / this.blockTokens) * this.blockTokens;
    return blocks > 0 && this.engine.canForkPrefix(entry.engineId, blocks) ? blocks : 0;
  }

  /**
   * Positions of `tokenIds` worth a snapshot after prefill reaches them, ascending: the head marked
   * by the client, the longest head shared with a recent prompt, and the prompt minus its last token
   * (a later turn of the same conversation starts with it). Also remembers the prompt.
   */
  snapshotPoints(tokenIds: readonly number[], cachedLength: number, prefixLength?: number): number[] {
    if (this.capacity === 0) return [];
    const candidates = new Set<number>([tokenIds.length - 1]);
    if (prefixLength !== undefined) candidates.add(prefixLength);
    let shared = 0;
    for (const recent of this.recentPrompts) shared = Math.max(shared, sharedLength(recent, tokenIds));
    candidates.add(shared);
    this.recentPrompts.push(tokenIds.slice());
    if (this.recentPrompts.length > RECENT_PROMPTS) this.recentPrompts.shift();
    return [...candidates]
      .filter((length) => length >= this.blockTokens && length > cachedLength && length < tokenIds.length)
      .filter((length) => !this.contains(tokenIds.slice(0, length)))
      .sort((a, b) => a - b);
  }

  /** Forks `sourceEngineId` (whose first `length` positions are `tokenIds`) into the cache. */
  insert(tokenIds: readonly number[], length: number, sourceEngineId: number): void {
    const prefix = tokenIds.slice(0, length);
    if (!this.accepts(prefix)) return;
    if (this.entries.length >= this.capacity) this.evictOne();
    this.entries.push({ tokenIds: prefix, engineId: this.engine.forkSequence(sourceEngineId), lastUsed: ++this.clock });
  }

  /** Whether adopt() would keep a row holding `tokenIds`: the cache is on, they fill a block and no entry holds the same. */
  accepts(tokenIds: readonly number[]): boolean {
    return this.capacity > 0 && tokenIds.length >= this.blockTokens && !this.contains(tokenIds);
  }

  /** Takes over `engineId`, whose positions are `tokenIds` (a finished sequence), evicting the LRU entry when full; accepts() first. */
  adopt(tokenIds: readonly number[], engineId: number): void {
    if (!this.accepts(tokenIds)) throw new Error('prefix cache: adopt() of a row it does not accept');
    if (this.entries.length >= this.capacity) this.evictOne();
    this.entries.push({ tokenIds: tokenIds.slice(), engineId, lastUsed: ++this.clock });
  }

  /** Releases the least recently used entry; false when the cache is empty. */
  evictOne(): boolean {
    if (this.entries.length === 0) return false;
    let oldest = 0;
    for (let i = 1; i < this.entries.length; i++) if (this.entries[i].lastUsed < this.entries[oldest].lastUsed) oldest = i;
    const [entry] = this.entries.splice(oldest, 1);
    this.engine.releaseSequence(entry.engineId);
    return true;
  }

  clear(): void {
    while (this.evictOne());
  }

  private contains(tokenIds: readonly number[]): boolean {
    return this.entries.some((entry) => entry.tokenIds.length === tokenIds.length && sharedLength(entry.tokenIds, tokenIds) === tokenIds.length);
  }
}
