// The official `openai` client, pointed at the worker (in-process fetch), parses what the edge sends:
// streamed chunks, include_usage, errors in-band and as HTTP statuses, and non-streaming bodies.

import OpenAI from 'openai';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { env } from 'cloudflare:test';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { BackendStream, callEdge, createKey, fakeBackend, scriptedBackend, sseResponse } from '../test-support/edge-harness';

let client: OpenAI;

beforeAll(async () => {
  const { secret } = await createKey();
  const edgeFetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const { response } = await callEdge(url.pathname, { ...init, headers: init?.headers });
    return response;
  };
  client = new OpenAI({ apiKey: secret, baseURL: 'http://edge/v1', maxRetries: 0, fetch: edgeFetch as typeof fetch });
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe('official openai client against the edge', () => {
  it('streams a chat and reads usage', async () => {
    const text = 'Streaming works, même en UTF-8 🙂.';
    scriptedBackend(getDefaultTokenizer().encode(text));
    const stream = await client.chat.completions.create({
      model: env.MODEL_ID,
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(content).toBe(text);
    expect(finish).toBe('stop');
    expect(usage?.completion_tokens).toBe(getDefaultTokenizer().encode(text).length);
  });

  it('reads a non-streaming completion and the models list', async () => {
    scriptedBackend(getDefaultTokenizer().encode('Plain answer.'));
    const completion = await client.chat.completions.create({ model: env.MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5 });
    expect(completion.choices[0].message.content).toBe('Plain answer.');
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([env.MODEL_ID]);
  });

  it('surfaces HTTP errors and in-band stream errors as APIError', async () => {
    await expect(client.chat.completions.create({ model: env.MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], temperature: 9 })).rejects.toMatchObject({
      status: 400,
      param: 'temperature',
    });
    const backend = new BackendStream();
    fakeBackend(() => sseResponse(backend));
    const stream = await client.chat.completions.create({ model: env.MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], stream: true });
    backend.send('token', { choice: 0, tokenIds: [22557] });
    backend.send('error', { message: 'x', type: 'server_error', param: null, code: 'internal_error' });
    backend.close();
    let content = '';
    await expect(
      (async () => {
        for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? '';
      })(),
    ).rejects.toBeInstanceOf(OpenAI.APIError);
    expect(content).toBe(getDefaultTokenizer().decode([22557]));
  });
});
