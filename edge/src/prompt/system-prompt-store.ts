// Named system prompts that operators keep in the SYSTEM_PROMPTS KV namespace (`prompt:<name>`), read
// through a per-isolate LRU and the Cache API (both for PROMPT_TTL_SECONDS) so a hot name needs no KV read.

import { z } from 'zod';
import { LruCache } from './lru-cache';

export const PROMPT_PREFIX = 'prompt:';
export const PROMPT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const MAX_PROMPT_CHARS = 200_000;
/** How stale a cached name may be after an operator changes it elsewhere (KV itself is eventually consistent ~60 s). */
export const PROMPT_TTL_SECONDS = 60;

const CACHE_ORIGIN = 'https://edge-cache.internal/system-prompt/';
/** Where the Cache API keeps the list of names (KV lists are the scarcest KV operation on the free plan). */
const NAMES_CACHE_URL = 'https://edge-cache.internal/system-prompt-names';
/** One KV list page; a deployment with more names lists the first ones and says so (`complete: false`). */
export const MAX_LISTED_NAMES = 1000;

export interface PromptNames {
  names: string[];
  complete: boolean;
}

export const storedPromptSchema = z.object({ name: z.string(), content: z.string(), updated: z.string() });
export type StoredSystemPrompt = z.infer<typeof storedPromptSchema>;

const byName = new LruCache<string, { prompt: StoredSystemPrompt | null; expiresAt: number }>(256);

export class SystemPromptStore {
  constructor(
    private readonly kv: KVNamespace,
    private readonly cacheStorage: Cache | null,
  ) {}

  async get(name: string): Promise<StoredSystemPrompt | null> {
    if (!PROMPT_NAME_PATTERN.test(name)) return null;
    const now = Date.now();
    const local = byName.get(name);
    if (local && local.expiresAt > now) return local.prompt;
    const cached = await this.fromCacheApi(name);
    if (cached) {
      byName.set(name, { prompt: cached, expiresAt: now + PROMPT_TTL_SECONDS * 1000 });
      return cached;
    }
    const parsed = storedPromptSchema.safeParse(await this.kv.get(PROMPT_PREFIX + name, 'json'));
    const prompt = parsed.success ? parsed.data : null;
    byName.set(name, { prompt, expiresAt: now + PROMPT_TTL_SECONDS * 1000 });
    if (prompt && this.cacheStorage) {
      const response = new Response(JSON.stringify(prompt), { headers: { 'cache-control': `public, max-age=${PROMPT_TTL_SECONDS}` } });
      await this.cacheStorage.put(CACHE_ORIGIN + encodeURIComponent(name), response).catch(() => undefined);
    }
    return prompt;
  }

  async put(name: string, content: string): Promise<StoredSystemPrompt> {
    const prompt: StoredSystemPrompt = { name, content, updated: new Date().toISOString() };
    await this.kv.put(PROMPT_PREFIX + name, JSON.stringify(prompt));
    await this.forget(name);
    return prompt;
  }

  async delete(name: string): Promise<boolean> {
    const existed = (await this.kv.get(PROMPT_PREFIX + name)) !== null;
    await this.kv.delete(PROMPT_PREFIX + name);
    await this.forget(name);
    return existed;
  }

  /** The stored names (never the contents), sorted, cached like the prompts for PROMPT_TTL_SECONDS. */
  async names(): Promise<PromptNames> {
    const cached = await this.cacheStorage?.match(NAMES_CACHE_URL).catch(() => undefined);
    if (cached) return (await cached.json()) as PromptNames;
    const listed = await this.kv.list({ prefix: PROMPT_PREFIX, limit: MAX_LISTED_NAMES });
    const result: PromptNames = { names: listed.keys.map((key) => key.name.slice(PROMPT_PREFIX.length)).sort(), complete: listed.list_complete };
    if (this.cacheStorage) {
      const response = new Response(JSON.stringify(result), { headers: { 'cache-control': `public, max-age=${PROMPT_TTL_SECONDS}` } });
      await this.cacheStorage.put(NAMES_CACHE_URL, response).catch(() => undefined);
    }
    return result;
  }

  /** Drops this isolate's and this colo's cached copy; other colos expire within PROMPT_TTL_SECONDS. */
  private async forget(name: string): Promise<void> {
    byName.delete(name);
    await this.cacheStorage?.delete(CACHE_ORIGIN + encodeURIComponent(name)).catch(() => undefined);
    await this.cacheStorage?.delete(NAMES_CACHE_URL).catch(() => undefined);
  }

  private async fromCacheApi(name: string): Promise<StoredSystemPrompt | null> {
    if (!this.cacheStorage) return null;
    try {
      const response = await this.cacheStorage.match(CACHE_ORIGIN + encodeURIComponent(name));
      if (!response) return null;
      const parsed = storedPromptSchema.safeParse(await response.json());
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }

  static clearIsolate(): void {
    byName.clear();
  }
}
