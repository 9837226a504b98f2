import { env } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { StopRequest } from '../../../shared/protocol';
import type { KeyUsageBody } from './key-usage';
import { BackendStream, bearer, callEdge, createKey, fakeBackend, readSse, scriptedBackend, sseResponse } from '../test-support/edge-harness';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';

afterEach(() => {
  vi.restoreAllMocks();
});

type ErrorJson = { error: { message: string; type: string; param: string | null; code: string } };
type ClientUsage = { prompt_tokens: number; completion_tokens: number; prompt_tokens_details: { cached_tokens: number } };
const ADMIN = { ADMIN_API_KEY: 'admin-key-for-usage-tests' };
const chat = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: env.MODEL_ID,
  messages: [{ role: 'user', content: 'Hello there' }],
  max_tokens: 16,
  ...extra,
});
const post = (secret: string, json: unknown) => callEdge('/v1/chat/completions', { method: 'POST', headers: bearer(secret), json });
const get = (path: string, secret: string, overrides = {}) => callEdge(path, { headers: bearer(secret) }, overrides);
const today = () => new Date().toISOString().slice(0, 10);

/** The usage object a client received, streamed (include_usage) or not. */
async function receivedUsage(response: Response, streamed: boolean): Promise<ClientUsage> {
  if (!streamed) return ((await response.json()) as { usage: ClientUsage }).usage;
  const { data } = await readSse(response);
  return (data as { usage?: ClientUsage | null }[]).find((chunk) => chunk.usage)!.usage!;
}

/** Reads the stream until `count` chunks with non-empty content have arrived. */
async function readContentDeltas(reader: ReadableStreamDefaultReader<Uint8Array>, count: number): Promise<void> {
  const decoder = new TextDecoder();
  let seen = 0;
  while (seen < count) {
    const { value, done } = await reader.read();
    if (done) throw new Error('the stream ended early');
    seen += decoder.decode(value).match(/"content":"[^"]/g)?.length ?? 0;
  }
}

describe('GET /v1/usage', () => {
  it("totals the usage objects the key's clients received: streamed, non-streamed and n = 2", async () => {
    const { secret, record } = await createKey();
    const sum = { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0 };
    const requests = [
      chat({ stream: true, stream_options: { include_usage: true } }),
      chat(),
      chat({ n: 2 }),
      chat({ n: 2, stream: true, stream_options: { include_usage: true } }),
    ];
    for (const [index, body] of requests.entries()) {
      scriptedBackend(getDefaultTokenizer().encode('one two three'.repeat(index + 1)), 'stop', 3 + index);
      const { response, settle } = await post(secret, body);
      const usage = await receivedUsage(response, body.stream === true);
      await settle();
      sum.requests += 1;
      sum.prompt_tokens += usage.prompt_tokens;
      sum.cached_tokens += usage.prompt_tokens_details.cached_tokens;
      sum.completion_tokens += usage.completion_tokens;
    }
    expect(sum.cached_tokens).toBe(3 + 4 + 5 + 6);
    const { response } = await get('/v1/usage', secret);
    expect(response.status).toBe(200);
    expect(await response.json()).toStrictEqual({ key_id: record.keyId, total: sum, days: [{ date: today(), ...sum }] });
  });

  /** A stream whose client reads three tokens and leaves; the backend's stop answer is the test's to give. */
  async function leftStream(secret: string) {
    const stream = new BackendStream();
    const stops: StopRequest[] = [];
    let answer!: (response: Response | Promise<Response>) => void;
    const answered = new Promise<Response>((resolve) => (answer = resolve));
    const calls = fakeBackend(() => sseResponse(stream), {
      onStop: (stop) => {
        stops.push(stop);
        return answered;
      },
    });
    const { response, settle } = await post(secret, chat({ stream: true, stream_options: { include_usage: true }, max_tokens: 1000 }));
    const [one, two, three] = getDefaultTokenizer().encode('one two three');
    const reader = response.body!.getReader();
    // Each token event is relayed at once, so its text arriving means the edge has counted it.
    stream.send('token', { choice: 0, tokenIds: [one] });
    await readContentDeltas(reader, 1);
    stream.send('token', { choice: 0, tokenIds: [two, three] });
    await readContentDeltas(reader, 1);
    // As a real backend does when the edge closes its request: it ends the body.
    calls[0].signal.addEventListener('abort', () => stream.close());
    await reader.cancel();
    await vi.waitFor(() => expect(stops).toHaveLength(1));
    return { stream, stops, answer, settle, promptTokens: calls[0].request.tokenIds.length, requestId: calls[0].request.requestId };
  }

  it("bills a cancelled stream by what the backend generated, from its stop answer, without holding the key's slot for it", async () => {
    const { secret, record } = await createKey({ rpm: 1000, tpm: 10_000_000, concurrent: 1 });
    const left = await leftStream(secret);
    expect(left.stops[0]).toEqual({ requestId: left.requestId, reason: 'client_closed' });
    // The backend has not answered yet: the slot is free already (a concurrency of 1 admits the next request)
    // and the key is billed what the edge read, 3 tokens.
    const limiter = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(record.keyId));
    await vi.waitFor(async () => expect((await limiter.inspect(record.limits)).activeLeases).toBe(0));
    const provisional = (await (await get('/v1/usage', secret)).response.json()) as KeyUsageBody;
    expect(provisional.total).toEqual({ requests: 1, prompt_tokens: left.promptTokens, cached_tokens: 0, completion_tokens: 3 });
    // It generated 11 tokens for the request (8 the edge never read), 5 of the prompt's from the prefix cache.
    left.answer(Response.json({ usage: { promptTokens: left.promptTokens, completionTokens: 11, cachedTokens: 5 } }));
    await left.settle();
    const body = (await (await get('/v1/usage', secret)).response.json()) as KeyUsageBody;
    const billed = { requests: 1, prompt_tokens: left.promptTokens, cached_tokens: 5, completion_tokens: 11 };
    expect(body).toStrictEqual({ key_id: record.keyId, total: billed, days: [{ date: today(), ...billed }] });
  });

  it('bills a cancelled stream what the edge received when the backend gives no count (an older backend, or none reachable)', async () => {
    const answers = [
      () => new Response(null, { status: 204 }),
      () => new Response('{}', { status: 500 }),
      () => Promise.reject(new Error('connection refused')),
    ];
    for (const answer of answers) {
      const { secret } = await createKey();
      const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
      const left = await leftStream(secret);
      left.answer(answer());
      await left.settle();
      logged.mockRestore();
      const body = (await (await get('/v1/usage', secret)).response.json()) as KeyUsageBody;
      expect(body.total).toEqual({ requests: 1, prompt_tokens: left.promptTokens, cached_tokens: 0, completion_tokens: 3 });
      vi.restoreAllMocks();
    }
  });

  it('bills nothing for a request no backend took (503), streamed or not', async () => {
    const { secret } = await createKey();
    fakeBackend(() => new Response('down', { status: 503 }));
    for (const stream of [false, true]) {
      const { response, settle } = await post(secret, chat({ stream }));
      expect(response.status).toBe(503);
      await settle();
    }
    const body = (await (await get('/v1/usage', secret)).response.json()) as KeyUsageBody;
    expect(body).toStrictEqual({ key_id: body.key_id, total: { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0 }, days: [] });
  });

  it('answers 401 without a key', async () => {
    const { response } = await callEdge('/v1/usage');
    expect(response.status).toBe(401);
  });
});

describe('GET /admin/keys/:keyId/usage', () => {
  it("gives the operator any key's usage, the same body its holder reads", async () => {
    const { secret, record } = await createKey();
    scriptedBackend(getDefaultTokenizer().encode('hi'));
    await (await post(secret, chat())).settle();
    const own = await (await get('/v1/usage', secret)).response.json();
    const { response } = await get(`/admin/keys/${record.keyId}/usage`, ADMIN.ADMIN_API_KEY, ADMIN);
    expect(response.status).toBe(200);
    expect(await response.json()).toStrictEqual(own);
    expect((own as KeyUsageBody).total.requests).toBe(1);
  });

  it("refuses another key's usage to a non-operator key with a 403, a wrong secret with a 401", async () => {
    const holder = await createKey();
    const other = await createKey();
    const refused = await get(`/admin/keys/${other.record.keyId}/usage`, holder.secret, ADMIN);
    expect(refused.response.status).toBe(403);
    expect(((await refused.response.json()) as ErrorJson).error).toMatchObject({ type: 'permission_error', code: 'permission_denied' });
    const own = await get(`/admin/keys/${holder.record.keyId}/usage`, holder.secret, ADMIN);
    expect(own.response.status).toBe(403);
    const wrong = await get(`/admin/keys/${other.record.keyId}/usage`, 'sk-edge-not-a-stored-key', ADMIN);
    expect(wrong.response.status).toBe(401);
    expect(((await wrong.response.json()) as ErrorJson).error.code).toBe('invalid_api_key');
    // Without an operator key configured the route does not exist for anyone.
    expect((await get(`/admin/keys/${other.record.keyId}/usage`, holder.secret)).response.status).toBe(404);
  });

  it('answers 404 naming the key for an unknown key id', async () => {
    const { response } = await get('/admin/keys/key_nope/usage', ADMIN.ADMIN_API_KEY, ADMIN);
    expect(response.status).toBe(404);
    expect(((await response.json()) as ErrorJson).error).toMatchObject({ code: 'not_found', param: 'keyId', message: "No key with id 'key_nope'." });
  });

  it("opens the dev key's usage (id `dev`) with the dev key, as /limits", async () => {
    const dev = { DEV_API_KEY: 'sk-dev-key-for-usage-tests' };
    scriptedBackend(getDefaultTokenizer().encode('hi there'));
    const before = (await (await get('/admin/keys/dev/usage', dev.DEV_API_KEY, dev)).response.json()) as KeyUsageBody;
    const { response, settle } = await callEdge('/v1/chat/completions', { method: 'POST', headers: bearer(dev.DEV_API_KEY), json: chat() }, dev);
    const usage = await receivedUsage(response, false);
    await settle();
    const after = (await (await get('/admin/keys/dev/usage', dev.DEV_API_KEY, dev)).response.json()) as KeyUsageBody;
    expect(after.key_id).toBe('dev');
    expect(after.total.requests - before.total.requests).toBe(1);
    expect(after.total.prompt_tokens - before.total.prompt_tokens).toBe(usage.prompt_tokens);
    expect(after.total.completion_tokens - before.total.completion_tokens).toBe(usage.completion_tokens);
    expect(await (await get('/v1/usage', dev.DEV_API_KEY, dev)).response.json()).toStrictEqual(after);
  });
});
