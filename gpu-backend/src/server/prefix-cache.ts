// Prefix cache: forked KV snapshots of prompt heads (system prompts, earlier turns), keyed by a hash
// of the token ids and verified id by id, evicted least-recently-used within a budget of sequences.
//
// A snapshot is a whole engine sequence, so with a sliding window it carries the rolling buffer as it
// stood at the end of the prefix: exactly what the positions after the prefix attend to. Continuing a
// fork is therefore the same computation as continuing the original prefill at that position.

import type { ModelEngine } from '../model/runtime/engine-types';

interface PrefixEntry {
  tokenIds: number[];
  engineId: number;
  lastUsed: number;
}

export interface PrefixHit {
  engineId: number;
  length: number;
}

/** How many recent prompts are compared to a new one to find a shared head worth a snapshot. */
const RECENT_PROMPTS = 32;

// FNV-1a over 32-bit ids; rolling, so the hashes of all prefixes of a prompt cost one pass.
function extendHash(hash: number, tokenId: number): number {
  return Math.imul(hash ^ tokenId, 0x01000193) >>> 0;
}
const EMPTY_HASH = 0x811c9dc5;

function sharedLength(a: readonly number[], b: readonly number[]): number {
  const limit = Math.min(a.length, b.length);
  let i = 0;
  while (i < limit && a[i] === b[i]) i++;
  return i;
}

export class PrefixCache {
  private readonly entries = new Map<string, PrefixEntry>();
  /** How many entries have each length: lookup only hashes where an entry could match. */
  private readonly lengths = new Map<number, number>();
  private readonly recentPrompts: number[][] = [];
  private clock = 0;
  hits = 0;
  misses = 0;

  constructor(
    private readonly engine: Pick<ModelEngine, 'forkSequence' | 'releaseSequence'>,
    readonly capacity: number,
    /** Shortest prefix worth a snapshot: below it the fork costs about what the prefill saves. */
    readonly minTokens: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Longest cached prefix of `tokenIds` no longer than `maxLength`; counts a hit or a miss. */
  lookup(tokenIds: readonly number[], maxLength: number): PrefixHit | null {
    let best: PrefixEntry | null = null;
    if (this.entries.size > 0) {
      let hash = EMPTY_HASH;
      for (let length = 1; length <= Math.min(maxLength, tokenIds.length); length++) {
        hash = extendHash(hash, tokenIds[length - 1]);
        if (!this.lengths.has(length)) continue;
        const entry = this.entries.get(`${length}:${hash}`);
        if (entry && sharedLength(entry.tokenIds, tokenIds) >= length) best = entry;
      }
    }
    if (!best) {
      this.misses++;
      return null;
    }
    this.hits++;
    best.lastUsed = ++this.clock;
    return { engineId: best.engineId, length: best.tokenIds.length };
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
      .filter((length) => length >= this.minTokens && length > cachedLength && length < tokenIds.length)
      .filter((length) => !this.contains(tokenIds, length))
      .sort((a, b) => a - b);
  }

  /** Forks `sourceEngineId` (whose first `length` positions are `tokenIds`) into the cache. */
  insert(tokenIds: readonly number[], length: number, sourceEngineId: number): void {
    if (this.capacity === 0 || this.contains(tokenIds, length)) return;
    if (this.entries.size >= this.capacity) this.evictOne();
    const prefix = tokenIds.slice(0, length);
    const engineId = this.engine.forkSequence(sourceEngineId);
    this.entries.set(this.keyOf(prefix), { tokenIds: prefix, engineId, lastUsed: ++this.clock });
    this.lengths.set(length, (this.lengths.get(length) ?? 0) + 1);
  }

  /** Releases the least recently used snapshot; false when the cache is empty. */
  evictOne(): boolean {
    let oldest: [string, PrefixEntry] | null = null;
    for (const item of this.entries) if (!oldest || item[1].lastUsed < oldest[1].lastUsed) oldest = item;
    if (!oldest) return false;
    const [key, entry] = oldest;
    this.entries.delete(key);
    const count = (this.lengths.get(entry.tokenIds.length) ?? 1) - 1;
    if (count === 0) this.lengths.delete(entry.tokenIds.length);
    else this.lengths.set(entry.tokenIds.length, count);
    this.engine.releaseSequence(entry.engineId);
    return true;
  }

  clear(): void {
    while (this.evictOne());
  }

  private contains(tokenIds: readonly number[], length: number): boolean {
    const entry = this.entries.get(this.keyOf(tokenIds.slice(0, length)));
    return entry !== undefined && sharedLength(entry.tokenIds, tokenIds) >= length;
  }

  private keyOf(prefix: readonly number[]): string {
    let hash = EMPTY_HASH;
    for (const tokenId of prefix) hash = extendHash(hash, tokenId);
    return `${prefix.length}:${hash}`;
  }
}
