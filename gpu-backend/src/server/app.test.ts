import { afterEach, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION_HEADER, type ErrorBody, type GenerateResponse } from '../../../shared/protocol';
import { SseParser } from '../../../shared/sse';
import { createBackendApp } from './app';
import { FakeEngine } from './fake-engine';
import { GenerationClient } from './generation-client';
import { fakeGreedy, readEvents, StepGate } from './test-support';
import type { ServingLimits } from './worker-messages';

const VOCAB = 64;
const MAX_MODEL_LEN = 128;
const clients: GenerationClient[] = [];

async function setup(options: { limits?: Partial<ServingLimits>; backendToken?: string; gate?: StepGate; heartbeatMs?: number } = {}) {
  const engine = new FakeEngine({ vocabSize: VOCAB, maxModelLen: MAX_MODEL_LEN, maxSequences: 8, beforeStep: options.gate?.wait });
  const client = GenerationClient.inProcess({ engine: { kind: 'fake', options: {} }, limits: { prefixCacheSize: 0, ...options.limits } }, engine);
  clients.push(client);
  const app = createBackendApp({ client, backendToken: options.backendToken, heartbeatMs: options.heartbeatMs });
  await client.whenReady();
  return { app, client, engine };
}

function generate(body: unknown, init: RequestInit = {}): Request {
  return new Request('http://backend/v1/generate', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, ...init });
}

async function errorOf(response: Response): Promise<ErrorBody['error']> {
  return ((await response.json()) as ErrorBody).error;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
});

describe('backend app: validation and auth', () => {
  it.each([
    [{ requestId: 'r', tokenIds: [] }, 'tokenIds'],
    [{ requestId: 'r', tokenIds: 'abc' }, 'tokenIds'],
    [{ requestId: 'r', tokenIds: [1, 2.5] }, 'tokenIds[1]'],
    [{ requestId: 'r', tokenIds: [1, VOCAB] }, 'tokenIds[1]'],
    [{ requestId: 7, tokenIds: [1] }, 'requestId'],
    [{ requestId: 'r', tokenIds: [1], sampling: { temperature: 'hot' } }, 'sampling.temperature'],
    [{ requestId: 'r', tokenIds: [1], sampling: { temperature: -1 } }, 'sampling.temperature'],
    [{ requestId: 'r', tokenIds: [1], sampling: { maxTokens: 1e9 } }, 'sampling.maxTokens'],
    [{ requestId: 'r', tokenIds: [1], sampling: { n: 0 } }, 'sampling.n'],
    [{ requestId: 'r', tokenIds: [1], sampling: { topP: 0 } }, 'sampling.topP'],
    [{ requestId: 'r', tokenIds: [1], sampling: { stopTokenIds: [1, -3] } }, 'sampling.stopTokenIds[1]'],
    [{ requestId: 'r', tokenIds: [1], stream: 'yes' }, 'stream'],
  ])('400 invalid_request for %j names %s', async (body, param) => {
    const { app } = await setup();
    const response = await app.request(generate(body));
    expect(response.status).toBe(400);
    const error = await errorOf(response);
    expect(error.code).toBe('invalid_request');
    expect(error.param).toBe(param);
    expect(error.message).toContain(param);
  });

  it('rejects prompt + maxTokens past the context before any work, and ignores unknown fields', async () => {
    const { app, engine } = await setup();
    const steps = engine.stepLog.length;
    const tooLong = await app.request(generate({ requestId: 'r', tokenIds: Array(100).fill(5), sampling: { maxTokens: 29 } }));
    expect(tooLong.status).toBe(400);
    expect(await errorOf(tooLong)).toMatchObject({ code: 'context_length_exceeded', param: 'sampling.maxTokens' });
    expect(engine.stepLog.length).toBe(steps);
    const fits = await app.request(
      generate({ requestId: 'r', tokenIds: Array(100).fill(5), sampling: { maxTokens: 28, temperature: 0, ignoreEos: true, futureKnob: 1 }, extra: { a: 1 } }),
    );
    expect(fits.status).toBe(200);
    expect(((await fits.json()) as GenerateResponse).usage.completionTokens).toBe(28);
    const bad = await app.request(new Request('http://backend/v1/generate', { method: 'POST', body: '{nope' }));
    expect(bad.status).toBe(400);
    const huge = await app.request(new Request('http://backend/v1/generate', { method: 'POST', body: ' '.repeat(9 * 1024 * 1024) }));
    expect(huge.status).toBe(413);
    const missing = await app.request('/v2/nothing');
    expect(missing.status).toBe(404);
    expect(missing.headers.get(PROTOCOL_VERSION_HEADER)).toBe('1');
  });

  it('BACKEND_TOKEN: 401 without the bearer token, health and readiness stay open', async () => {
    const { app } = await setup({ backendToken: 's3cret' });
    const body = { requestId: 'r', tokenIds: [1, 2], sampling: { maxTokens: 1 } };
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 's3cret' }] as Record<string, string>[]) {
      const response = await app.request(generate(body, { headers }));
      expect(response.status).toBe(401);
      expect((await errorOf(response)).code).toBe('invalid_api_key');
    }
    expect((await app.request('/v1/model')).status).toBe(401);
    expect((await app.request('/health')).status).toBe(200);
    expect((await app.request('/ready')).status).toBe(200);
    const ok = await app.request(generate(body, { headers: { authorization: 'Bearer s3cret' } }));
    expect(ok.status).toBe(200);
    expect(ok.headers.get(PROTOCOL_VERSION_HEADER)).toBe('1');
  });

  it('/ready is 503 until the engine is warm; /v1/model describes the model', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB, maxModelLen: MAX_MODEL_LEN });
    const client = GenerationClient.inProcess({ engine: { kind: 'fake', options: {} } }, engine);
    clients.push(client);
    const app = createBackendApp({ client });
    expect((await app.request('/ready')).status).toBe(503);
    expect((await app.request('/health')).status).toBe(200);
    await client.whenReady();
    const ready = await app.request('/ready');
    expect([ready.status, await ready.json()]).toEqual([200, { status: 'ready', runtime: 'fake', executionProvider: 'none' }]);
    expect(await (await app.request('/v1/model')).json()).toEqual({
      modelId: 'fake-mistral',
      vocabSize: VOCAB,
      maxModelLen: MAX_MODEL_LEN,
      slidingWindow: null,
      bosTokenId: 1,
      eosTokenId: 2,
    });
  });
});

describe('backend app: generation', () => {
  it('streams token* -> finish -> end with the reference ids, and answers JSON when stream is false', async () => {
    const { app } = await setup();
    const prompt = [1, 9, 17, 33];
    const sampling = { temperature: 0, maxTokens: 5, ignoreEos: true, logprobs: 2 };
    const response = await app.request(generate({ requestId: 'a', tokenIds: prompt, sampling, stream: true }));
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    expect(response.headers.get(PROTOCOL_VERSION_HEADER)).toBe('1');
    const events = await readEvents(response);
    expect(events.map((event) => event.event)).toEqual(['token', 'token', 'token', 'token', 'token', 'finish', 'end']);
    const ids = events.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : []));
    expect(ids).toEqual(fakeGreedy(prompt, 5, VOCAB));
    const first = events[0];
    expect(first.event === 'token' && first.data.logprobs![0].top.length).toBe(2);
    expect(events[6]).toEqual({ event: 'end', data: { usage: { promptTokens: 4, completionTokens: 5, cachedTokens: 0 } } });

    const json = (await (
      await app.request(generate({ requestId: 'b', tokenIds: prompt, sampling: { ...sampling, n: 2 }, stream: false }))
    ).json()) as GenerateResponse;
    expect(json.requestId).toBe('b');
    expect(json.choices.map((choice) => choice.tokenIds)).toEqual([ids, ids]);
    expect(json.choices.map((choice) => choice.finishReason)).toEqual(['length', 'length']);
  });

  it('sends SSE heartbeat comments while a request waits for its first token', async () => {
    const gate = new StepGate();
    const { app } = await setup({ gate, heartbeatMs: 5 });
    gate.close();
    const response = await app.request(generate({ requestId: 'h', tokenIds: [1, 5], sampling: { maxTokens: 2, ignoreEos: true }, stream: true }));
    const reader = response.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toBe(': ping\n\n');
    gate.open();
    const parser = new SseParser();
    const names: string[] = [];
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      names.push(...parser.push(new TextDecoder().decode(chunk.value)).map((message) => message.event));
    }
    expect(names).toEqual(['token', 'token', 'finish', 'end']);
  });

  it('queue full -> 503 overloaded with retry-after', async () => {
    const gate = new StepGate();
    const { app } = await setup({ limits: { maxRunning: 1, maxQueue: 1, maxBatchedTokens: 8 }, gate });
    gate.close();
    const body = (id: string) => generate({ requestId: id, tokenIds: [1, 5], sampling: { maxTokens: 2, ignoreEos: true }, stream: true });
    const first = await app.request(body('1'));
    const second = await app.request(body('2'));
    const third = await app.request(body('3'));
    expect([first.status, second.status, third.status]).toEqual([200, 200, 503]);
    expect(third.headers.get('retry-after')).toBe('1');
    expect((await errorOf(third)).code).toBe('overloaded');
    gate.open();
    expect((await readEvents(first)).at(-1)!.event).toBe('end');
    expect((await readEvents(second)).at(-1)!.event).toBe('end');
  });

  it('a disconnect mid-stream or before the first token frees the engine sequences', async () => {
    const gate = new StepGate();
    const { app, client, engine } = await setup({ gate, limits: { prefixCacheSize: 0 } });
    const initial = engine.freeSequences();
    const body = (id: string) => generate({ requestId: id, tokenIds: [1, 5, 7], sampling: { maxTokens: 100, ignoreEos: true, n: 2 }, stream: true });
    const midStream = await app.request(body('mid'));
    const reader = midStream.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('event: token');
    gate.close();
    const early = await app.request(body('early'));
    await reader.cancel();
    await early.body!.cancel();
    gate.open();
    await client.idle();
    expect(engine.freeSequences()).toBe(initial);
    expect(client.metrics.render()).toContain('backend_requests_total{outcome="abort"} 2');

    const controller = new AbortController();
    const pending = app.request(
      generate({ requestId: 'json', tokenIds: [1, 5], sampling: { maxTokens: 100, ignoreEos: true } }, { signal: controller.signal }),
    );
    controller.abort();
    const json = (await (await pending).json()) as GenerateResponse;
    expect(json.choices[0].finishReason).toBe('abort');
    expect(engine.freeSequences()).toBe(initial);
  });

  it('drain: new requests get 503 shutting_down, unfinished streams end with an in-band error', async () => {
    const gate = new StepGate();
    const { app, client } = await setup({ gate });
    const stream = await app.request(generate({ requestId: 's', tokenIds: [1, 5], sampling: { maxTokens: 50, ignoreEos: true }, stream: true }));
    gate.close();
    const draining = client.drain(20);
    const refused = await app.request(generate({ requestId: 't', tokenIds: [1, 5] }));
    expect(refused.status).toBe(503);
    expect((await errorOf(refused)).code).toBe('shutting_down');
    const events = await readEvents(stream);
    expect(events.at(-1)).toMatchObject({ event: 'error', data: { code: 'shutting_down' } });
    gate.open();
    await draining;
  });
});

/** A tiny Prometheus text-format checker: every sample belongs to a declared family and parses. */
function parsePrometheus(text: string): Map<string, number> {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
    if (!sample) throw new Error(`not a Prometheus sample: ${line}`);
    const family = sample[1].replace(/_(bucket|sum|count)$/, '');
    if (!types.has(sample[1]) && types.get(family) !== 'histogram') throw new Error(`sample before its # TYPE: ${line}`);
    samples.set(sample[1] + (sample[2] ?? ''), Number(sample[4].replace('Inf', 'Infinity')));
  }
  return samples;
}

describe('backend app: one onError for every refusal', () => {
  it('renders each refusal OpenAI-shaped with the protocol header, and counts generation refusals once each', async () => {
    const { app, client } = await setup({ backendToken: 'secret' });
    const auth = { authorization: 'Bearer secret', 'content-type': 'application/json' };
    const refusals = [
      [await app.request('/v1/model'), 401, 'invalid_api_key'],
      [await app.request(generate({ requestId: 'r', tokenIds: [] }, { headers: auth })), 400, 'invalid_request'],
      [await app.request(new Request('http://backend/v1/generate', { method: 'POST', body: '{', headers: auth })), 400, 'invalid_request'],
      [
        await app.request(generate({ requestId: 'r', tokenIds: [1], sampling: { maxTokens: MAX_MODEL_LEN } }, { headers: auth })),
        400,
        'context_length_exceeded',
      ],
      [await app.request('/nowhere', { headers: auth }), 404, 'not_found'],
    ] as const;
    for (const [response, status, code] of refusals) {
      expect(response.status, code).toBe(status);
      expect(response.headers.get(PROTOCOL_VERSION_HEADER), code).not.toBeNull();
      expect(response.headers.get('content-type'), code).toContain('application/json');
      expect((await errorOf(response)).code).toBe(code);
    }
    const samples = parsePrometheus(client.metrics.render());
    expect(samples.get('backend_requests_total{outcome="unauthorized"}')).toBe(1);
    expect(samples.get('backend_requests_total{outcome="invalid_request"}')).toBe(2);
    expect(samples.get('backend_requests_total{outcome="context_length_exceeded"}')).toBe(1);
  });
});

describe('backend app: metrics', () => {
  it('/ready and backend_engine_info name the session runtime (js unless asked) and the execution provider', async () => {
    const onnx = { modelDir: 'm', dtype: 'fp32', executionProvider: 'cpu', intraOpThreads: 1, maxSequences: 2, onnxCacheDir: null } as const;
    for (const [options, runtime] of [
      [onnx, 'js'],
      [{ ...onnx, runtime: 'native', executionProvider: 'cuda' }, 'native'],
    ] as const) {
      const client = GenerationClient.inProcess({ engine: { kind: 'onnx', options } }, new FakeEngine({ vocabSize: VOCAB, maxModelLen: MAX_MODEL_LEN }));
      clients.push(client);
      await client.whenReady();
      const app = createBackendApp({ client });
      expect(await (await app.request('/ready')).json()).toEqual({ status: 'ready', runtime, executionProvider: options.executionProvider });
      const samples = parsePrometheus(await (await app.request('/metrics')).text());
      expect(samples.get(`backend_engine_info{runtime="${runtime}",execution_provider="${options.executionProvider}"}`)).toBe(1);
    }
  });

  it('counts drafted and accepted speculative tokens', async () => {
    const engine = new FakeEngine({ vocabSize: 8, maxModelLen: MAX_MODEL_LEN, maxSequences: 4, speculativeTokens: 3 });
    const client = GenerationClient.inProcess({ engine: { kind: 'fake', options: {} }, limits: { prefixCacheSize: 0, speculativeTokens: 3 } }, engine);
    clients.push(client);
    const app = createBackendApp({ client });
    await client.whenReady();
    const tokenIds = Array.from({ length: 20 }, (_, i) => 3 + (i % 4));
    await app.request(generate({ requestId: 'a', tokenIds, sampling: { maxTokens: 30, ignoreEos: true }, stream: false }));
    const samples = parsePrometheus(await (await app.request('/metrics')).text());
    const drafted = samples.get('backend_speculative_drafted_tokens_total')!;
    expect(drafted).toBeGreaterThan(0);
    expect(engine.stepLog.flat().some((item) => item.verify)).toBe(true);
    expect(samples.get('backend_speculative_accepted_tokens_total')!).toBeLessThanOrEqual(drafted);
  });

  it('reports the idle KV slots and sequences from the start, before any request', async () => {
    const { app } = await setup();
    const samples = parsePrometheus(await (await app.request('/metrics')).text());
    expect(samples.get('backend_free_sequences')).toBe(8);
    expect(samples.get('backend_kv_slots_free')).toBe(8 * MAX_MODEL_LEN);
    expect(samples.get('backend_kv_slots_used')).toBe(0);
    expect(samples.get('backend_engine_info{runtime="fake",execution_provider="none"}')).toBe(1);
  });

  it('renders parseable Prometheus text with request, token, latency and cache figures', async () => {
    const { app } = await setup();
    await app.request(generate({ requestId: 'a', tokenIds: [1, 2, 3], sampling: { maxTokens: 3, ignoreEos: true }, stream: false }));
    await app.request(generate({ requestId: 'b', tokenIds: [] }));
    const response = await app.request('/metrics');
    expect(response.headers.get('content-type')).toContain('text/plain');
    const samples = parsePrometheus(await response.text());
    expect(samples.get('backend_requests_total{outcome="length"}')).toBe(1);
    expect(samples.get('backend_requests_total{outcome="invalid_request"}')).toBe(1);
    expect(samples.get('backend_completion_tokens_total')).toBe(3);
    expect(samples.get('backend_time_to_first_token_seconds_count')).toBe(1);
    expect(samples.get('backend_inter_token_latency_seconds_count')).toBe(2);
    expect(samples.get('backend_inter_token_latency_seconds_bucket{le="+Inf"}')).toBe(2);
    for (const name of [
      'backend_kv_slots_used',
      'backend_kv_slots_free',
      'backend_batch_size',
      'backend_running_sequences',
      'backend_waiting_requests',
      'backend_prefix_cache_hits_total',
      'backend_prefix_cache_misses_total',
    ]) {
      expect(samples.has(name), name).toBe(true);
    }
    expect(() => parsePrometheus('backend_x 1\n')).toThrow(/TYPE/);
    expect(() => parsePrometheus('# TYPE backend_x gauge\nbackend_x one\n')).toThrow(/not a Prometheus sample/);
  });
});
