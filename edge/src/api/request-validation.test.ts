import { env } from 'cloudflare:test';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { bearer, callEdge, createKey, fakeBackend, scriptedBackend } from '../test-support/edge-harness';

type ErrorJson = { error: { message: string; type: string; param: string | null; code: string } };
let secret: string;
const valid = () => ({ model: env.MODEL_ID, messages: [{ role: 'user', content: 'Hi' }] });

beforeAll(async () => {
  secret = (await createKey()).secret;
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function post(path: string, body: unknown, extraHeaders: Record<string, string> = {}) {
  const init =
    typeof body === 'string'
      ? { body, headers: { ...bearer(secret), 'content-type': 'application/json', ...extraHeaders } }
      : { json: body, headers: { ...bearer(secret), ...extraHeaders } };
  const { response, settle } = await callEdge(path, { method: 'POST', ...init });
  await settle();
  return response;
}

async function expectError(response: Response, status: number, code: string, param?: string | null): Promise<ErrorJson> {
  expect(response.status).toBe(status);
  const body = (await response.json()) as ErrorJson;
  expect(body.error.code).toBe(code);
  if (param !== undefined) expect(body.error.param).toBe(param);
  return body;
}

describe('request validation', () => {
  it('names the field of a wrong type', async () => {
    await expectError(await post('/v1/chat/completions', { ...valid(), temperature: 'hot' }), 400, 'invalid_request', 'temperature');
    await expectError(
      await post('/v1/chat/completions', {
        ...valid(),
        messages: [
          { role: 'user', content: 'a' },
          { role: 'assistant', content: 7 },
        ],
      }),
      400,
      'invalid_request',
      'messages[1].content',
    );
    await expectError(await post('/v1/chat/completions', { ...valid(), stop: [1] }), 400, 'invalid_request', 'stop[0]');
    await expectError(await post('/v1/chat/completions', { messages: valid().messages }), 400, 'invalid_request', 'model');
  });

  it('says which values are unsupported', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools', /no tool-call tokens/],
      [{ tool_choice: 'required' }, 'tool_choice', /only when 'tools' lists tools/],
      [{ functions: [{ name: 'f' }] }, 'functions', /not supported/],
      [{ response_format: { type: 'json_schema', json_schema: {} } }, 'response_format.json_schema.name', /required/],
      [{ n: 99 }, 'n', /at most/],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0].type', /not supported/],
      [{ messages: [{ role: 'critic', content: 'x' }] }, 'messages[0].role', /not supported/],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id', /needs the tool_call_id/],
    ];
    for (const [extra, param, words] of cases) {
      const body = await expectError(await post('/v1/chat/completions', { ...valid(), ...extra }), 400, 'invalid_request', param);
      expect(body.error.message).toMatch(words);
    }
  });

  it('ignores unknown fields and accepts text content parts and nulls', async () => {
    const calls = scriptedBackend(getDefaultTokenizer().encode('ok'));
    const response = await post('/v1/chat/completions', {
      ...valid(),
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Hello' },
            { type: 'text', text: 'there' },
          ],
        },
      ],
      temperature: null,
      unknown_field: { deep: true },
      tool_choice: 'none',
      tools: [],
    });
    expect(response.status).toBe(200);
    expect(calls[0].request.tokenIds).toEqual([1, ...getDefaultTokenizer().encode('[INST] Hello\nthere [/INST]')]);
  });

  it('refuses malformed JSON, non-object bodies and oversized bodies', async () => {
    await expectError(await post('/v1/chat/completions', '{"model": '), 400, 'invalid_request', null);
    await expectError(await post('/v1/chat/completions', '[1,2]'), 400, 'invalid_request', null);
    await expectError(await post('/v1/chat/completions', ''), 400, 'invalid_request', null);
    const huge = JSON.stringify({ ...valid(), padding: 'x'.repeat(5 * 1024 * 1024) });
    await expectError(await post('/v1/chat/completions', huge), 413, 'invalid_request');
  });

  it('refuses role-order mistakes with the template error param', async () => {
    await expectError(
      await post('/v1/chat/completions', { ...valid(), messages: [{ role: 'assistant', content: 'x' }] }),
      400,
      'invalid_request',
      'messages[0].role',
    );
    await expectError(
      await post('/v1/chat/completions', {
        ...valid(),
        messages: [
          { role: 'user', content: 'a' },
          { role: 'user', content: 'b' },
        ],
      }),
      400,
      'invalid_request',
      'messages[1].role',
    );
  });

  it('computes context_length_exceeded at the edge, before calling the backend', async () => {
    const calls = fakeBackend(() => new Response('unexpected', { status: 500 }));
    const long = 'word '.repeat(5000);
    await expectError(
      await post('/v1/chat/completions', { ...valid(), messages: [{ role: 'user', content: long }] }),
      400,
      'context_length_exceeded',
      'messages',
    );
    await expectError(await post('/v1/chat/completions', { ...valid(), max_tokens: Number(env.MAX_MODEL_LEN) }), 400, 'context_length_exceeded', 'messages');
    expect(calls).toHaveLength(0);
  });

  it('404s an unknown model', async () => {
    await expectError(await post('/v1/chat/completions', { ...valid(), model: 'gpt-4o' }), 404, 'model_not_found', 'model');
  });
});

describe('/v1/completions, /tokenize, /detokenize', () => {
  it('completes a text prompt with [BOS] + ids and a 16-token default', async () => {
    const tokenizer = getDefaultTokenizer();
    // Ids of "▁and▁more": after a prompt, the first "▁" is the space between "time" and "and".
    const calls = scriptedBackend(tokenizer.encode('and more'));
    const response = await post('/v1/completions', { model: env.MODEL_ID, prompt: 'Once upon a time' });
    const body = (await response.json()) as { object: string; choices: { text: string }[] };
    expect(body.object).toBe('text_completion');
    // The completion continues the prompt, so its first token's space is real text.
    expect(body.choices[0].text).toBe(' and more');
    expect(calls[0].request.tokenIds).toEqual([1, ...tokenizer.encode('Once upon a time')]);
    expect(calls[0].request.sampling?.maxTokens).toBe(16);
  });

  it('tokenizes in vLLM shapes and detokenizes back', async () => {
    const tokenizer = getDefaultTokenizer();
    const prompt = await post('/tokenize', { prompt: 'Hello world' });
    expect(await prompt.json()).toEqual({ count: 3, max_model_len: Number(env.MAX_MODEL_LEN), tokens: [1, ...tokenizer.encode('Hello world')] });
    const chat = (await (
      await post('/tokenize', { model: env.MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], add_generation_prompt: true })
    ).json()) as { tokens: number[] };
    expect(chat.tokens).toEqual([1, ...tokenizer.encode('[INST] Hi [/INST]')]);
    const back = await post('/detokenize', { tokens: tokenizer.encode('Hello world') });
    expect(await back.json()).toEqual({ prompt: 'Hello world' });
    await expectError(await post('/detokenize', { tokens: [99999999] }), 400, 'invalid_request', 'tokens[0]');
  });

  it('refuses /tokenize given both prompt and messages, naming messages', async () => {
    const body = await expectError(await post('/tokenize', { prompt: 'Hi', messages: [{ role: 'user', content: 'Hi' }] }), 400, 'invalid_request', 'messages');
    expect(body.error.message).toMatch(/not both/);
  });

  it('refuses stream_options without stream: true, as OpenAI does', async () => {
    for (const extra of [{}, { stream: false }]) {
      const withOptions = { ...extra, stream_options: { include_usage: true } };
      const chat = await expectError(await post('/v1/chat/completions', { ...valid(), ...withOptions }), 400, 'invalid_request', 'stream_options');
      expect(chat.error.message).toMatch(/only allowed when stream is true/);
      await expectError(await post('/v1/completions', { model: env.MODEL_ID, prompt: 'Hi', ...withOptions }), 400, 'invalid_request', 'stream_options');
    }
  });
});
