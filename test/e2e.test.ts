// End to end: a real backend process (ONNX session on the default model) + the edge worker in workerd
// (`wrangler dev`, local mode) + the official `openai` client, exactly as a user runs them.

import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stack } from '../scripts/stack';
import { startTestStack } from './test-stack';

let stack: Stack;
let client: OpenAI;
const logLines: string[] = [];

beforeAll(async () => {
  stack = await startTestStack('e2e-edge', logLines);
  client = new OpenAI({ baseURL: `${stack.edgeUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
}, 240_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

const MESSAGES = [{ role: 'user' as const, content: 'Write a haiku about sliding windows.' }];

describe('edge + backend + openai client', () => {
  it('lists the served model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain(stack.modelInfo.modelId);
  });

  it('streams chunks incrementally whose text equals the detokenized backend token ids', async () => {
    const maxTokens = 64;
    const started = performance.now();
    const stream = await client.chat.completions.create({
      model: stack.modelInfo.modelId,
      messages: MESSAGES,
      stream: true,
      max_tokens: maxTokens,
      temperature: 0,
    });
    const arrivals: number[] = [];
    let text = '';
    let finishReason: string | null = null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      const choice = chunk.choices[0];
      if (choice?.delta?.content) {
        arrivals.push(performance.now() - started);
        text += choice.delta.content;
      }
      if (choice?.finish_reason) finishReason = choice.finish_reason;
    }
    expect(finishReason).not.toBeNull();
    expect(arrivals.length).toBeGreaterThan(5);
    const first = arrivals[0]!;
    const last = arrivals[arrivals.length - 1]!;
    // Token by token: the first text arrives in the first half of the stream's life, not in one burst at the end.
    expect(first).toBeLessThan(last * 0.5);

    // The same prompt ids straight to the backend (greedy), detokenized by the edge: same text.
    const tokenized = (await (
      await fetch(`${stack.edgeUrl}/tokenize`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: stack.modelInfo.modelId, messages: MESSAGES }),
      })
    ).json()) as { tokens: number[] };
    expect(tokenized.tokens[0]).toBe(1);
    const generated = (await (
      await fetch(`${stack.backendUrl}/v1/generate`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.backendToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ requestId: 'e2e-direct', tokenIds: tokenized.tokens, stream: false, sampling: { temperature: 0, maxTokens } }),
      })
    ).json()) as { choices: { tokenIds: number[] }[] };
    const detokenized = (await (
      await fetch(`${stack.edgeUrl}/detokenize`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: stack.modelInfo.modelId, tokens: generated.choices[0]!.tokenIds.filter((id) => id !== stack.modelInfo.eosTokenId) }),
      })
    ).json()) as { prompt: string };
    expect(text).toBe(detokenized.prompt);
  });

  it('answers a non-streaming request with one chat.completion', async () => {
    const completion = await client.chat.completions.create({
      model: stack.modelInfo.modelId,
      messages: MESSAGES,
      max_tokens: 8,
      temperature: 0,
    });
    expect(completion.object).toBe('chat.completion');
    expect(completion.choices[0]!.message.role).toBe('assistant');
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(5);
    expect(completion.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it('serves the playground page at / with its CSP, while the API, /health and unknown paths reach the worker', async () => {
    const page = await fetch(`${stack.edgeUrl}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("require-trusted-types-for 'script'");
    expect(await page.text()).toContain('<script type="module" src="/playground.js">');
    expect((await fetch(`${stack.edgeUrl}/playground.js`)).headers.get('content-security-policy')).toContain("default-src 'none'");
    const models = await fetch(`${stack.edgeUrl}/v1/models`);
    expect(models.status).toBe(401);
    expect(((await models.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
    for (const path of ['/no-such-page', '/_headers']) {
      const unknown = await fetch(`${stack.edgeUrl}${path}`);
      expect(unknown.status, path).toBe(404);
      expect(unknown.headers.get('content-type'), path).toBe('application/json');
    }
  });

  it('refuses a wrong API key with an OpenAI-shaped 401', async () => {
    const stranger = new OpenAI({ baseURL: `${stack.edgeUrl}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    const error = await stranger.models.list().then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((error as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
  });

  it('answers malformed JSON with a 400 naming the problem', async () => {
    const res = await fetch(`${stack.edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: '{"model": "x", "messages": [',
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { type: string } };
    expect(body.error.type).toBe('invalid_request_error');
  });

  it('structured output: chat.completions.parse with zodResponseFormat validates what the grammar let through', async () => {
    // Bounded strings, arrays and integers, so that a random-weight model finishes inside max_tokens.
    const Answer = z.object({
      title: z.string().max(8),
      count: z.number().int().min(0).max(9),
      tags: z.array(z.enum(['red', 'blue'])).max(3),
      note: z.string().max(5).nullable(),
    });
    for (const seed of [1, 2, 3]) {
      const completion = await client.chat.completions.parse({
        model: stack.modelInfo.modelId,
        messages: MESSAGES,
        response_format: zodResponseFormat(Answer, 'answer'),
        max_tokens: 256,
        temperature: 1,
        seed,
      });
      const choice = completion.choices[0]!;
      expect(choice.finish_reason).toBe('stop');
      // parse() already ran Answer.parse on the content; check it independently of the client too.
      expect(Answer.safeParse(JSON.parse(choice.message.content!)).success).toBe(true);
      expect(choice.message.parsed).not.toBeNull();
    }
  }, 120_000);

  // Last: it stops the backend.
  it('answers 503 with a clear message when the backend is down, and the edge stays up', async () => {
    await stack.stopBackend();
    const error = await client.chat.completions.create({ model: stack.modelInfo.modelId, messages: MESSAGES, max_tokens: 4 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    const health = await fetch(`${stack.edgeUrl}/health`);
    expect(health.status).toBe(200);
  });
});
