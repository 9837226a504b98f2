// vLLM's return_tokens_as_token_ids: logprobs name each token (and each alternative) "token_id:N", on
// chat and legacy completions, streamed and not; anything but a boolean is a 400 naming the field.

import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { BackendStream, bearer, callEdge, createKey, fakeBackend, readSse, sseResponse } from '../test-support/edge-harness';

const MODEL = 'mistral-tiny-random';
let secret: string;

beforeAll(async () => {
  secret = (await createKey()).secret;
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** A backend that sends `tokenIds` one event each, with a logprob and two alternatives (the id itself and 13). */
function backendOf(tokenIds: number[]): void {
  fakeBackend(() => {
    const stream = new BackendStream();
    for (const tokenId of tokenIds) {
      const top = [
        { tokenId, logprob: -0.5 },
        { tokenId: 13, logprob: -3 },
      ];
      stream.send('token', { choice: 0, tokenIds: [tokenId], logprobs: [{ tokenId, logprob: -0.5, top }] });
    }
    stream.send('finish', { choice: 0, finishReason: 'length' });
    stream.send('end', { usage: { promptTokens: 5, completionTokens: tokenIds.length, cachedTokens: 0 } });
    stream.close();
    return sseResponse(stream);
  });
}

const post = (path: string, json: Record<string, unknown>) => callEdge(path, { method: 'POST', headers: bearer(secret), json: { model: MODEL, ...json } });
const chatBody = { messages: [{ role: 'user', content: 'Hi' }], logprobs: true, top_logprobs: 2 };
type ChatLogprob = { token: string; bytes: number[]; top_logprobs: { token: string }[] };
type CompletionLogprobs = { tokens: string[]; top_logprobs: Record<string, number>[]; text_offset: number[] };

describe('return_tokens_as_token_ids', () => {
  const tokenizer = getDefaultTokenizer();
  const ids = tokenizer.encode('Hello world');

  it('chat: tokens and alternatives become token_id:N, the bytes stay the text, streamed and not', async () => {
    backendOf(ids);
    const whole = await post('/v1/chat/completions', { ...chatBody, return_tokens_as_token_ids: true });
    const content = ((await whole.response.json()) as { choices: { logprobs: { content: ChatLogprob[] } }[] }).choices[0].logprobs.content;
    backendOf(ids);
    const streamed = await post('/v1/chat/completions', { ...chatBody, return_tokens_as_token_ids: true, stream: true });
    const chunks = (await readSse(streamed.response)).data as { choices: { logprobs: { content: ChatLogprob[] } | null }[] }[];
    const streamedContent = chunks.flatMap((chunk) => chunk.choices[0]?.logprobs?.content ?? []);
    for (const entries of [content, streamedContent]) {
      expect(entries.map((entry) => entry.token)).toEqual(ids.map((id) => `token_id:${id}`));
      expect(entries.map((entry) => entry.top_logprobs.map((alt) => alt.token))).toEqual(ids.map((id) => [`token_id:${id}`, 'token_id:13']));
      expect(entries.map((entry) => String.fromCharCode(...entry.bytes)).join('')).toBe(' Hello world');
    }
    backendOf(ids);
    const plain = await post('/v1/chat/completions', { ...chatBody, return_tokens_as_token_ids: false });
    const plainContent = ((await plain.response.json()) as { choices: { logprobs: { content: ChatLogprob[] } }[] }).choices[0].logprobs.content;
    expect(plainContent.map((entry) => entry.token).join('')).toBe(' Hello world');
  });

  it('completions: tokens and top_logprobs keys become token_id:N, text offsets still follow the text, streamed and not', async () => {
    const body = { prompt: 'Once', logprobs: 2, max_tokens: 5, return_tokens_as_token_ids: true };
    backendOf(ids);
    const whole = await post('/v1/completions', body);
    const logprobs = ((await whole.response.json()) as { choices: { logprobs: CompletionLogprobs }[] }).choices[0].logprobs;
    backendOf(ids);
    const streamed = await post('/v1/completions', { ...body, stream: true });
    const chunks = (await readSse(streamed.response)).data as { choices: { logprobs: CompletionLogprobs | null }[] }[];
    const pieces = chunks.flatMap((chunk) => (chunk.choices[0]?.logprobs ? [chunk.choices[0].logprobs] : []));
    for (const lp of [
      logprobs,
      { tokens: pieces.flatMap((p) => p.tokens), top_logprobs: pieces.flatMap((p) => p.top_logprobs), text_offset: pieces.flatMap((p) => p.text_offset) },
    ]) {
      expect(lp.tokens).toEqual(ids.map((id) => `token_id:${id}`));
      expect(lp.top_logprobs.map((top) => Object.keys(top))).toEqual(ids.map((id) => [`token_id:${id}`, 'token_id:13']));
      expect(lp.text_offset).toEqual([0, ' Hello'.length]);
    }
  });

  it('anything but a boolean (or null) is a 400 naming the field, on both routes', async () => {
    const calls = fakeBackend(() => new Response('unexpected', { status: 500 }));
    for (const [path, body] of [
      ['/v1/chat/completions', chatBody],
      ['/v1/completions', { prompt: 'Once', logprobs: 1 }],
    ] as const) {
      for (const value of ['true', 1, {}]) {
        const { response } = await post(path, { ...body, return_tokens_as_token_ids: value });
        expect(response.status).toBe(400);
        const { error } = (await response.json()) as { error: { param: string; type: string } };
        expect(error).toMatchObject({ param: 'return_tokens_as_token_ids', type: 'invalid_request_error' });
      }
    }
    expect(calls).toHaveLength(0);
  });
});
