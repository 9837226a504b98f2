// Token ids of system prompts, cached per isolate (LRU) and in the Cache API, keyed by tokenizer
// fingerprint + template version + SHA-256 of the system text, so a repeated system prompt is neither
// read nor tokenized again. Entries record whether splicing them into a conversation was verified exact.

import type { Tokenizer } from '../tokenizer/tokenizer';
import { LruCache } from './lru-cache';

export interface SystemPrefixEntry {
  /** The leading prompt ids that depend only on the system prompt (BOS and template text included). */
  tokenIds: number[];
  /** false when splicing was found inexact for this text: always tokenize the whole conversation. */
  composable: boolean;
}

const CACHE_ORIGIN = 'https://edge-cache.internal';
const CACHE_SECONDS = 7 * 24 * 3600;
const isolateEntries = new LruCache<string, SystemPrefixEntry>(512);
const fingerprints = new WeakMap<Tokenizer, string>();

/** FNV-1a over every piece: identifies the vocabulary without shipping a name with it. */
export function tokenizerFingerprint(tokenizer: Tokenizer): string {
  let known = fingerprints.get(tokenizer);
  if (known) return known;
  let hash = 0x811c9dc5;
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const piece = tokenizer.idToPiece(id) ?? '';
    for (let i = 0; i < piece.length; i++) hash = Math.imul(hash ^ piece.charCodeAt(i), 0x01000193);
    hash = Math.imul(hash ^ 0x1f, 0x01000193);
  }
  known = `${tokenizer.vocabSize}-${(hash >>> 0).toString(16)}`;
  fingerprints.set(tokenizer, known);
  return known;
}

export async function contentHash(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class SystemPrefixCache {
  /** Counters for tests and the benchmark. */
  readonly stats = { isolateHits: 0, cacheApiHits: 0, misses: 0 };

  constructor(private readonly cacheStorage: Cache | null) {}

  static key(tokenizer: Tokenizer, hash: string): string {
    return `${CACHE_ORIGIN}/system-prefix/${tokenizerFingerprint(tokenizer)}/${tokenizer.templateVersion}/${hash}`;
  }

  async get(key: string): Promise<SystemPrefixEntry | null> {
    const local = isolateEntries.get(key);
    if (local) {
      this.stats.isolateHits++;
      return local;
    }
    if (this.cacheStorage) {
      try {
        const response = await this.cacheStorage.match(key);
        if (response) {
          const entry = (await response.json()) as SystemPrefixEntry;
          if (Array.isArray(entry.tokenIds) && typeof entry.composable === 'boolean') {
            isolateEntries.set(key, entry);
            this.stats.cacheApiHits++;
            return entry;
          }
        }
      } catch {
        // The Cache API is an optimization; a failure is a miss.
      }
    }
    this.stats.misses++;
    return null;
  }

  /** Stores in the isolate now; the Cache API write is returned for ctx.waitUntil. */
  put(key: string, entry: SystemPrefixEntry): Promise<void> {
    isolateEntries.set(key, entry);
    if (!this.cacheStorage) return Promise.resolve();
    const response = new Response(JSON.stringify(entry), {
      headers: { 'content-type': 'application/json', 'cache-control': `public, max-age=${CACHE_SECONDS}` },
    });
    return this.cacheStorage.put(key, response).catch(() => undefined);
  }

  static clearIsolate(): void {
    isolateEntries.clear();
  }
}
