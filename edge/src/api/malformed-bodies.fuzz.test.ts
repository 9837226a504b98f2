// Seeded fuzz of request bodies: random JSON shapes, types and mutations of valid requests, plus broken
// JSON text. Whatever arrives, the answer is never a 5xx, and every error is OpenAI-shaped.

import { env } from 'cloudflare:test';
import { afterEach, beforeAll, expect, it, vi } from 'vitest';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { bearer, callEdge, createKey, scriptedBackend } from '../test-support/edge-harness';

const CASES = 300;
let secret: string;

beforeAll(async () => {
  secret = (await createKey({ rpm: 100_000, tpm: 1_000_000_000, concurrent: 1000 })).secret;
});
afterEach(() => {
  vi.restoreAllMocks();
});

function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIELDS = [
  'model',
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'top_k',
  'min_p',
  'stop',
  'seed',
  'n',
  'presence_penalty',
  'frequency_penalty',
  'repetition_penalty',
  'logprobs',
  'top_logprobs',
  'stream',
  'stream_options',
  'user',
  'tools',
  'tool_choice',
  'response_format',
  'system_prompt_id',
  'ignore_eos',
  'prompt',
  'tokens',
  'add_generation_prompt',
];
const STRINGS = [
  '',
  'hello',
  '\ud800',
  '<s>',
  '[INST]',
  '🙂'.repeat(3),
  'x'.repeat(300),
  'mistral-tiny-random',
  'mistral-tiny-random@',
  'user',
  'assistant',
  'system',
  'tool',
  'text',
  'image_url',
  'none',
  'auto',
];
const NUMBERS = [0, -1, 1, 0.5, 2.5, 3, 1e308, -1e308, 4096, 4097, 2 ** 53, 1e-9, 7.5, 100];

function randomValue(random: () => number, depth: number): unknown {
  const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)];
  const kind = Math.floor(random() * (depth > 2 ? 5 : 8));
  switch (kind) {
    case 0:
      return null;
    case 1:
      return random() < 0.5;
    case 2:
      return pick(NUMBERS);
    case 3:
    case 4:
      return pick(STRINGS);
    case 5:
      return Array.from({ length: Math.floor(random() * 4) }, () => randomValue(random, depth + 1));
    case 6:
      return { role: pick(STRINGS), content: randomValue(random, depth + 1) };
    default: {
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 4); i > 0; i--)
        object[pick([...FIELDS, 'type', 'text', 'include_usage', 'role', 'content'])] = randomValue(random, depth + 1);
      return object;
    }
  }
}

function validChat(): Record<string, unknown> {
  return { model: env.MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 };
}

function randomBody(random: () => number): { path: string; body: string } {
  const paths = ['/v1/chat/completions', '/v1/chat/completions', '/v1/completions', '/tokenize', '/detokenize'];
  const path = paths[Math.floor(random() * paths.length)];
  const mode = random();
  if (mode < 0.15) {
    // Broken JSON text: a valid body cut at a random point, or with a byte flipped.
    const text = JSON.stringify(validChat());
    const cut = Math.floor(random() * text.length);
    return { path, body: random() < 0.5 ? text.slice(0, cut) : `${text.slice(0, cut)}\u0000}${text.slice(cut)}` };
  }
  if (mode < 0.3) return { path, body: JSON.stringify(randomValue(random, 0)) };
  // A valid base with 1-3 fields replaced by random values of random types.
  const base: Record<string, unknown> =
    path === '/v1/completions' ? { model: env.MODEL_ID, prompt: 'Hi', max_tokens: 4 } : path === '/detokenize' ? { tokens: [1, 2] } : validChat();
  for (let i = 1 + Math.floor(random() * 3); i > 0; i--) base[FIELDS[Math.floor(random() * FIELDS.length)]] = randomValue(random, 1);
  return { path, body: JSON.stringify(base) };
}

it(`never answers a malformed body with a 5xx (${CASES} seeded cases)`, async () => {
  scriptedBackend(getDefaultTokenizer().encode('ok'));
  const random = rng(20261127);
  const statuses = new Map<number, number>();
  for (let i = 0; i < CASES; i++) {
    const { path, body } = randomBody(random);
    const { response, settle } = await callEdge(path, { method: 'POST', body, headers: { ...bearer(secret), 'content-type': 'application/json' } });
    const text = await response.text();
    await settle();
    statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
    expect(response.status, `${path} ${body.slice(0, 300)} -> ${text.slice(0, 300)}`).toBeLessThan(500);
    if (response.status >= 400) {
      const error = (JSON.parse(text) as { error: Record<string, unknown> }).error;
      expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(typeof error.message).toBe('string');
    }
  }
  // The fuzz reaches both sides of validation.
  expect(statuses.get(400) ?? 0).toBeGreaterThan(CASES / 4);
  expect(statuses.get(200) ?? 0).toBeGreaterThan(10);
});
