import { env } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeChat, type ChatMessage } from '../tokenizer/chat-template';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { Tokenizer } from '../tokenizer/tokenizer';
import { bearer, callEdge, createKey, scriptedBackend } from '../test-support/edge-harness';
import { systemPrefixCache } from './prompt-stores';
import { buildChatPrompt } from './chat-prompt';
import { SystemPrefixCache } from './system-prefix-cache';

afterEach(() => {
  vi.restoreAllMocks();
});

const SYSTEMS = [
  'You are a helpful assistant.',
  'Réponds en français, brièvement.',
  'Line one\nline two\n\nThree  spaces   here ',
  '日本語で答えてください。🙂',
  'Ends with newline\n',
  'x',
  '   leading spaces',
  '<s> [INST] not control [/INST] </s>',
];
const CONVERSATIONS: ChatMessage[][] = [
  [{ role: 'user', content: 'Hello!' }],
  [{ role: 'user', content: ' starts with a space' }],
  [
    { role: 'user', content: 'First' },
    { role: 'assistant', content: 'Answer' },
    { role: 'user', content: 'Second\nwith newline' },
  ],
  [{ role: 'user', content: '\n\nnewlines first' }],
];

async function spliceMatchesFull(tokenizer: Tokenizer): Promise<number> {
  let hits = 0;
  for (const system of SYSTEMS) {
    for (const conversation of CONVERSATIONS) {
      const messages: ChatMessage[] = [{ role: 'system', content: system }, ...conversation];
      const reference = encodeChat(tokenizer, messages).tokenIds;
      const cache = new SystemPrefixCache(null);
      const first = await buildChatPrompt(tokenizer, messages, cache, () => undefined);
      expect(first.tokenIds).toEqual(reference);
      const second = await buildChatPrompt(tokenizer, messages, cache, () => undefined);
      expect(second.tokenIds, JSON.stringify(messages)).toEqual(reference);
      if (second.systemCache === 'hit') hits++;
    }
  }
  return hits;
}

describe('system prompt prefix splicing', () => {
  it('equals a full tokenization for v1, and hits the cache on repeats', async () => {
    SystemPrefixCache.clearIsolate();
    const hits = await spliceMatchesFull(getDefaultTokenizer());
    expect(hits).toBe(SYSTEMS.length * CONVERSATIONS.length);
  });

  it('equals a full tokenization for v3 (single-turn chats are spliced, multi-turn ones tokenized whole)', async () => {
    SystemPrefixCache.clearIsolate();
    const v3 = Tokenizer.fromSentencePieceModel(new Uint8Array(env.FIXTURE_TOKENIZER_V3!));
    expect(v3.templateVersion).toBe('v3');
    const hits = await spliceMatchesFull(v3);
    expect(hits).toBe(SYSTEMS.length * (CONVERSATIONS.length - 1));
  });
});

describe('Cache API tier', () => {
  it('serves a system prefix from the Cache API when this isolate has not seen it', async () => {
    const tokenizer = getDefaultTokenizer();
    const cache = new SystemPrefixCache((caches as unknown as { default: Cache }).default);
    const messages: ChatMessage[] = [
      { role: 'system', content: `Cache API tier ${crypto.randomUUID()}` },
      { role: 'user', content: 'Hi' },
    ];
    const writes: Promise<unknown>[] = [];
    const first = await buildChatPrompt(tokenizer, messages, cache, (p) => writes.push(p));
    await Promise.all(writes);
    SystemPrefixCache.clearIsolate();
    const second = await buildChatPrompt(tokenizer, messages, cache, () => undefined);
    expect(first.systemCache).toBe('miss');
    expect(second.systemCache).toBe('hit');
    expect(cache.stats).toEqual({ isolateHits: 0, cacheApiHits: 1, misses: 1 });
    expect(second.tokenIds).toEqual(encodeChat(tokenizer, messages).tokenIds);
  });
});

function countingKv(kv: KVNamespace): { kv: KVNamespace; reads: () => number } {
  let reads = 0;
  const wrapped = new Proxy(kv, {
    get(target, property) {
      const value = Reflect.get(target, property);
      if (property === 'get' || property === 'getWithMetadata') {
        return (...args: unknown[]) => {
          reads++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { kv: wrapped, reads: () => reads };
}

describe('named system prompts', () => {
  it('needs no KV read and no system-prompt tokenization on the second request', async () => {
    const { secret } = await createKey();
    const content = `You are terse. Session ${crypto.randomUUID()}. Never mention the weather.`;
    const admin = { ADMIN_API_KEY: 'admin-secret-123' };
    const put = await callEdge('/admin/system-prompts/terse', { method: 'PUT', headers: bearer('admin-secret-123'), json: { content } }, admin);
    expect(put.response.status).toBe(200);

    const tokenizer = getDefaultTokenizer();
    const calls = scriptedBackend(tokenizer.encode('ok'));
    const counted = countingKv(env.SYSTEM_PROMPTS);
    const request = { method: 'POST', headers: bearer(secret), json: { model: `${env.MODEL_ID}@terse`, messages: [{ role: 'user', content: 'Hi' }] } };
    const first = await callEdge('/v1/chat/completions', request, { SYSTEM_PROMPTS: counted.kv });
    expect(first.response.status).toBe(200);
    await first.settle();
    expect(counted.reads()).toBe(1);

    const encode = vi.spyOn(tokenizer, 'encode');
    const hitsBefore = systemPrefixCache.stats.isolateHits;
    const second = await callEdge('/v1/chat/completions', request, { SYSTEM_PROMPTS: counted.kv });
    expect(second.response.status).toBe(200);
    expect(counted.reads()).toBe(1);
    expect(systemPrefixCache.stats.isolateHits).toBe(hitsBefore + 1);
    expect(encode.mock.calls.some(([text]) => text.includes('Never mention the weather'))).toBe(false);
    // Same ids both times, and they are exactly the template with the stored prompt in place.
    const reference = encodeChat(tokenizer, [
      { role: 'system', content },
      { role: 'user', content: 'Hi' },
    ]);
    expect(calls[0].request.tokenIds).toEqual(reference.tokenIds);
    expect(calls[1].request.tokenIds).toEqual(reference.tokenIds);
    // The shared head is announced to the backend for its prefix cache.
    expect(reference.systemPrefixLength).toBeGreaterThan(10);
    expect(calls[0].request.prefixLength).toBe(reference.systemPrefixLength);
    expect(calls[1].request.prefixLength).toBe(reference.systemPrefixLength);
  });

  it('caches repeated inline system messages the same way', async () => {
    const { secret } = await createKey();
    const tokenizer = getDefaultTokenizer();
    scriptedBackend(tokenizer.encode('ok'));
    const system = `Inline system prompt ${crypto.randomUUID()}`;
    const request = {
      method: 'POST',
      headers: bearer(secret),
      json: {
        model: env.MODEL_ID,
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: 'Hi' },
        ],
      },
    };
    await (await callEdge('/v1/chat/completions', request)).settle();
    const encode = vi.spyOn(tokenizer, 'encode');
    const hitsBefore = systemPrefixCache.stats.isolateHits;
    expect((await callEdge('/v1/chat/completions', request)).response.status).toBe(200);
    expect(systemPrefixCache.stats.isolateHits).toBe(hitsBefore + 1);
    expect(encode.mock.calls.some(([text]) => text.includes(system))).toBe(false);
  });

  it('refuses an unknown prompt name and conflicting names', async () => {
    const { secret } = await createKey();
    const unknown = await callEdge('/v1/chat/completions', {
      method: 'POST',
      headers: bearer(secret),
      json: { model: env.MODEL_ID, system_prompt_id: 'nope', messages: [{ role: 'user', content: 'Hi' }] },
    });
    expect(unknown.response.status).toBe(404);
    expect(((await unknown.response.json()) as { error: { param: string } }).error.param).toBe('system_prompt_id');
    const conflict = await callEdge('/v1/chat/completions', {
      method: 'POST',
      headers: bearer(secret),
      json: { model: `${env.MODEL_ID}@a`, system_prompt_id: 'b', messages: [{ role: 'user', content: 'Hi' }] },
    });
    expect(conflict.response.status).toBe(400);
  });

  it('guards the admin routes with ADMIN_API_KEY and supports GET and DELETE', async () => {
    const path = '/admin/system-prompts/guarded';
    expect((await callEdge(path, { headers: bearer('whatever-key') }, { ADMIN_API_KEY: '' })).response.status).toBe(404);
    const admin = { ADMIN_API_KEY: 'admin-secret-123' };
    expect((await callEdge(path, { headers: bearer('wrong-admin-key') }, admin)).response.status).toBe(401);
    expect((await callEdge(path, { method: 'PUT', headers: bearer('admin-secret-123'), json: { content: 42 } }, admin)).response.status).toBe(400);
    await callEdge(path, { method: 'PUT', headers: bearer('admin-secret-123'), json: { content: 'Be kind.' } }, admin);
    const got = await callEdge(path, { headers: bearer('admin-secret-123') }, admin);
    expect(((await got.response.json()) as { content: string }).content).toBe('Be kind.');
    expect((await callEdge(path, { method: 'DELETE', headers: bearer('admin-secret-123') }, admin)).response.status).toBe(200);
    expect((await callEdge(path, { headers: bearer('admin-secret-123') }, admin)).response.status).toBe(404);
    expect((await callEdge('/admin/system-prompts/bad%20name', { headers: bearer('admin-secret-123') }, admin)).response.status).toBe(400);
  });
});
