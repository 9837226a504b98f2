import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SseParser } from '../../../shared/sse';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { BackendStream, bearer, callEdge, createKey, fakeBackend, readSse, scriptedBackend, sseResponse } from '../test-support/edge-harness';

const MODEL = 'mistral-tiny-random';
let secret: string;

beforeAll(async () => {
  secret = (await createKey()).secret;
});
afterEach(() => {
  vi.restoreAllMocks();
});

function chat(body: Record<string, unknown>, overrides = {}) {
  return callEdge(
    '/v1/chat/completions',
    { method: 'POST', headers: bearer(secret), json: { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], ...body } },
    overrides,
  );
}

type Chunk = {
  object: string;
  id: string;
  choices: { index: number; delta: { role?: string; content?: string }; finish_reason: string | null }[];
  usage?: unknown;
};

describe('POST /v1/chat/completions', () => {
  it('streams OpenAI chunks whose text is the detokenized backend ids, ending in [DONE]', async () => {
    const tokenizer = getDefaultTokenizer();
    const text = 'Bonjour, le monde! 🙂 日本語のテキスト';
    const calls = scriptedBackend(tokenizer.encode(text));
    const { response, settle } = await chat({ stream: true, stream_options: { include_usage: true }, max_tokens: 50 });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    expect(response.headers.get('cache-control')).toBe('no-cache');
    expect(response.headers.get('x-accel-buffering')).toBe('no');
    const { data, done } = await readSse(response);
    await settle();
    expect(done).toBe(true);
    const chunks = data as Chunk[];
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const content = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
    expect(content).toBe(text);
    // Every chunk is a chat.completion.chunk with one id; the last carries usage and no choices.
    expect(new Set(chunks.map((c) => c.object))).toEqual(new Set(['chat.completion.chunk']));
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    const promptLength = calls[0].request.tokenIds.length;
    expect(last.usage).toEqual({
      prompt_tokens: promptLength,
      completion_tokens: tokenizer.encode(text).length,
      total_tokens: promptLength + tokenizer.encode(text).length,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    expect(chunks[chunks.length - 2].choices[0].finish_reason).toBe('stop');
    // The backend got the Mistral v1 template ids and the shared secret.
    expect(calls[0].request.tokenIds).toEqual([1, ...tokenizer.encode('[INST] Hi [/INST]')]);
    expect(calls[0].headers.get('authorization')).toBe('Bearer test-backend-token');
    expect(calls[0].request.sampling?.maxTokens).toBe(50);
  });

  it('answers one chat.completion when not streaming, with cached_tokens from the backend', async () => {
    const tokenizer = getDefaultTokenizer();
    scriptedBackend(tokenizer.encode('The answer is 42.'), 'length', 3);
    const { response } = await chat({ max_tokens: 8, temperature: 0 });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      object: string;
      choices: { message: { content: string }; finish_reason: string }[];
      usage: { prompt_tokens_details: { cached_tokens: number } };
    };
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0].message.content).toBe('The answer is 42.');
    expect(body.choices[0].finish_reason).toBe('length');
    expect(body.usage.prompt_tokens_details.cached_tokens).toBe(3);
  });

  it('maps sampling fields and n onto the backend request', async () => {
    const calls = scriptedBackend(getDefaultTokenizer().encode('ok'));
    const { response } = await chat({
      n: 2,
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
      min_p: 0.05,
      seed: 7,
      presence_penalty: 0.1,
      frequency_penalty: 0.2,
      repetition_penalty: 1.1,
      ignore_eos: true,
      logprobs: true,
      top_logprobs: 2,
      max_completion_tokens: 5,
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { choices: { index: number; message: { content: string } }[] };
    expect(body.choices.map((c) => c.message.content)).toEqual(['ok', 'ok']);
    expect(calls[0].request.sampling).toEqual({
      maxTokens: 5,
      n: 2,
      temperature: 0.5,
      topP: 0.9,
      topK: 40,
      minP: 0.05,
      seed: 7,
      presencePenalty: 0.1,
      frequencyPenalty: 0.2,
      repetitionPenalty: 1.1,
      ignoreEos: true,
      logprobs: 2,
    });
  });

  it('cuts at a stop string split across tokens, never emits it, and cancels the backend', async () => {
    const tokenizer = getDefaultTokenizer();
    const ids = tokenizer.encode('Count: one two three STOP HERE four five');
    const stream = new BackendStream();
    const calls = fakeBackend(() => sseResponse(stream));
    const pending = chat({ stream: true, stop: ['never', 'STOP HERE'] });
    // The stop string spans several tokens; feed them one by one as a backend would.
    const { response, settle } = await pending;
    for (const id of ids) stream.send('token', { choice: 0, tokenIds: [id] });
    const { data, done } = await readSse(response);
    const chunks = data as Chunk[];
    const content = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
    expect(content).toBe('Count: one two three ');
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('stop');
    expect(done).toBe(true);
    // The backend is told of the stop first (stop-string-end.test.ts), then the fetch ends.
    await settle();
    expect(calls[0].signal.aborted).toBe(true);
    expect(stream.cancelled).toBe(true);
  });

  it('sends logprobs in OpenAI shape', async () => {
    const tokenizer = getDefaultTokenizer();
    const [hello] = tokenizer.encode('Hello');
    fakeBackend(() => {
      const stream = new BackendStream();
      stream.send('token', {
        choice: 0,
        tokenIds: [hello],
        logprobs: [
          {
            tokenId: hello,
            logprob: -0.25,
            top: [
              { tokenId: hello, logprob: -0.25 },
              { tokenId: 13, logprob: -2 },
            ],
          },
        ],
      });
      stream.send('finish', { choice: 0, finishReason: 'stop' });
      stream.send('end', { usage: { promptTokens: 5, completionTokens: 1, cachedTokens: 0 } });
      stream.close();
      return sseResponse(stream);
    });
    const { response } = await chat({ logprobs: true, top_logprobs: 2 });
    const body = (await response.json()) as { choices: { logprobs: { content: unknown[] } }[] };
    expect(body.choices[0].logprobs.content).toEqual([
      {
        token: ' Hello',
        logprob: -0.25,
        bytes: [32, 72, 101, 108, 108, 111],
        top_logprobs: [
          { token: ' Hello', logprob: -0.25, bytes: [32, 72, 101, 108, 108, 111] },
          { token: '\n', logprob: -2, bytes: [10] },
        ],
      },
    ]);
  });
});

describe('failures', () => {
  it('gives 503 backend_unavailable when no backend answers (connection refused)', async () => {
    // workerd prints its own "uncaught exception" lines for every refused connection, even a caught one, so
    // the refusal is raised as workerd raises it; a real refused port is covered end to end (test/edge-failures).
    fakeBackend(() => {
      throw new Error('Network connection lost.');
    });
    for (const stream of [false, true]) {
      const { response, settle } = await chat({ stream });
      expect(response.status).toBe(503);
      const body = (await response.json()) as { error: { code: string; type: string; message: string } };
      expect(body.error.code).toBe('backend_unavailable');
      expect(body.error.type).toBe('server_error');
      expect(body.error.message).toMatch(/backend/);
      await settle();
    }
  });

  it('retries another backend before the first token', async () => {
    const tokenizer = getDefaultTokenizer();
    const calls = fakeBackend(({ url }) => {
      if (url.startsWith('http://down.test')) return new Response('kaput: /secret/path', { status: 500 });
      const stream = new BackendStream();
      for (const id of tokenizer.encode('fine')) stream.send('token', { choice: 0, tokenIds: [id] });
      stream.send('finish', { choice: 0, finishReason: 'stop' });
      stream.send('end', { usage: { promptTokens: 1, completionTokens: 1, cachedTokens: 0 } });
      stream.close();
      return sseResponse(stream);
    });
    const { response } = await chat({}, { BACKEND_URLS: 'http://down.test,http://up.test' });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content).toBe('fine');
    expect(calls.map((c) => new URL(c.url).host).sort()).toEqual(calls.length === 2 ? ['down.test', 'up.test'] : ['up.test']);
  });

  it('turns a backend failure mid-stream into an in-band error chunk, then ends', async () => {
    const tokenizer = getDefaultTokenizer();
    const stream = new BackendStream();
    fakeBackend(() => sseResponse(stream));
    const { response } = await chat({ stream: true });
    for (const id of tokenizer.encode('partial')) stream.send('token', { choice: 0, tokenIds: [id] });
    stream.send('error', { message: 'CUDA error at /home/op/secret.cu:42', type: 'server_error', param: null, code: 'internal_error' });
    stream.close();
    const { data, done, raw } = await readSse(response);
    expect(response.status).toBe(200);
    const last = data[data.length - 1] as { error: { code: string; message: string } };
    expect(last.error.code).toBe('backend_unavailable');
    expect(raw).not.toContain('secret.cu');
    expect(done).toBe(true);
    const content = (data as Chunk[]).flatMap((c) => (c.choices ?? []).map((ch) => ch.delta.content ?? '')).join('');
    expect(content).toBe('partial');
  });

  it('treats a backend body that ends without an end event as a lost connection', async () => {
    const stream = new BackendStream();
    fakeBackend(() => sseResponse(stream));
    const { response } = await chat({ stream: true });
    stream.send('token', { choice: 0, tokenIds: [22557] });
    stream.close();
    const { data } = await readSse(response);
    expect((data[data.length - 1] as { error: { code: string } }).error.code).toBe('backend_unavailable');
  });

  it('cancels the backend request when the client disconnects before the backend sent a byte', async () => {
    let upstreamSignal: AbortSignal | undefined;
    let upstreamAborted!: () => void;
    const aborted = new Promise<void>((resolve) => (upstreamAborted = resolve));
    fakeBackend(({ signal }) => {
      upstreamSignal = signal;
      // Never answers: a backend still busy before its response headers.
      return new Promise<Response>((_, reject) => {
        signal.addEventListener('abort', () => {
          upstreamAborted();
          reject(new DOMException('aborted', 'AbortError'));
        });
      });
    });
    const { response, settle } = await chat({ stream: true }, { BACKEND_CONNECT_WAIT_MS: '1' });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('"role":"assistant"');
    expect(upstreamSignal?.aborted).toBe(false);
    await reader.cancel();
    await aborted;
    expect(upstreamSignal?.aborted).toBe(true);
    await settle();
  });

  it('sends heartbeat comments while the backend prefills', async () => {
    const stream = new BackendStream();
    fakeBackend(() => sseResponse(stream));
    const { response } = await chat({ stream: true }, { HEARTBEAT_MS: '5' });
    const reader = response.body!.getReader();
    let seen = '';
    while (!seen.includes(': ping')) seen += new TextDecoder().decode((await reader.read()).value);
    stream.send('token', { choice: 0, tokenIds: [22557] });
    stream.send('finish', { choice: 0, finishReason: 'stop' });
    stream.send('end', { usage: { promptTokens: 1, completionTokens: 1, cachedTokens: 0 } });
    stream.close();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    expect(seen).toContain('data: [DONE]');
    expect(seen).not.toContain('"error"');
    const chunks = new SseParser()
      .push(seen)
      .filter((m) => m.data !== '[DONE]')
      .map((m) => JSON.parse(m.data) as Chunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(getDefaultTokenizer().decode([22557]));
  });
});

describe('more shapes', () => {
  it('streams n=2 choices with their own indices and finish reasons', async () => {
    const tokenizer = getDefaultTokenizer();
    scriptedBackend(tokenizer.encode('two ways'));
    const { response } = await chat({ stream: true, n: 2 });
    const chunks = (await readSse(response)).data as Chunk[];
    for (const index of [0, 1]) {
      const mine = chunks.filter((c) => c.choices[0]?.index === index);
      expect(mine[0].choices[0].delta.role).toBe('assistant');
      expect(mine.map((c) => c.choices[0].delta.content ?? '').join('')).toBe('two ways');
      expect(mine[mine.length - 1].choices[0].finish_reason).toBe('stop');
    }
  });

  it('streams legacy completions with logprobs offsets and a usage chunk', async () => {
    const tokenizer = getDefaultTokenizer();
    const ids = tokenizer.encode('and then');
    fakeBackend(() => {
      const stream = new BackendStream();
      for (const id of ids) stream.send('token', { choice: 0, tokenIds: [id], logprobs: [{ tokenId: id, logprob: -1, top: [] }] });
      stream.send('finish', { choice: 0, finishReason: 'length' });
      stream.send('end', { usage: { promptTokens: 4, completionTokens: ids.length, cachedTokens: 0 } });
      stream.close();
      return sseResponse(stream);
    });
    const { response } = await callEdge('/v1/completions', {
      method: 'POST',
      headers: bearer(secret),
      json: { model: MODEL, prompt: 'Once', stream: true, logprobs: 0, stream_options: { include_usage: true } },
    });
    type CompletionChunk = {
      object: string;
      choices: { text: string; finish_reason: string | null; logprobs: { tokens: string[]; text_offset: number[] } | null }[];
      usage?: { completion_tokens: number };
    };
    const chunks = (await readSse(response)).data as CompletionChunk[];
    expect(new Set(chunks.map((c) => c.object))).toEqual(new Set(['text_completion']));
    const withText = chunks.filter((c) => c.choices[0]?.text);
    expect(withText.map((c) => c.choices[0].text).join('')).toBe(' and then');
    const tokens = withText.flatMap((c) => c.choices[0].logprobs!.tokens);
    const offsets = withText.flatMap((c) => c.choices[0].logprobs!.text_offset);
    expect(tokens.join('')).toBe(' and then');
    expect(offsets).toEqual([0, tokens[0].length]);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('length');
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(ids.length);
  });
});
