// Operator-facing behaviour: token reservations without max_tokens, lease renewal and expiry, backend
// silence, /metrics and the key-limits view, model retrieval, wrong keys, /tokenize with stored prompts.

import { env, runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { defaultCache } from '../app-env';
import { SystemPromptStore } from '../prompt/system-prompt-store';
import { LEASE_TTL_MS, type RateLimiter } from '../rate-limit/rate-limiter';
import { BackendStream, bearer, callEdge, createKey, fakeBackend, readSse, scriptedBackend, sseResponse } from '../test-support/edge-harness';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';

afterEach(() => {
  vi.restoreAllMocks();
});

type ErrorJson = { error: { message: string; param: string | null; code: string } };
const limiter = (keyId: string) => env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(keyId));
const chatBody = (extra: Record<string, unknown> = {}) => ({ model: env.MODEL_ID, messages: [{ role: 'user', content: 'hi' }], ...extra });
const post = (path: string, secret: string, json: unknown, overrides = {}) => callEdge(path, { method: 'POST', headers: bearer(secret), json }, overrides);

describe('token reservation', () => {
  it('admits a request without max_tokens on a key whose TPM is below the context length, then charges what it used', async () => {
    const { secret, record } = await createKey({ rpm: 100, tpm: 500, concurrent: 4 });
    const completion = getDefaultTokenizer().encode('one two three four');
    const calls = scriptedBackend(completion);
    const { response, settle } = await post('/v1/chat/completions', secret, chatBody());
    expect(response.status).toBe(200);
    await response.json();
    await settle();
    // The backend may still run to the end of the context: the estimate limits the reservation, not the output.
    expect(calls[0].request.sampling?.maxTokens).toBe(Number(env.MAX_MODEL_LEN) - calls[0].request.tokenIds.length);
    const state = await limiter(record.keyId).inspect(record.limits);
    const charged = 500 - state.remainingTokens;
    expect(charged).toBeLessThanOrEqual(calls[0].request.tokenIds.length + completion.length);
    expect(charged).toBeGreaterThan(calls[0].request.tokenIds.length + completion.length - 5);
    expect(state.activeLeases).toBe(0);
  });

  it('charges tokens used beyond the estimate, so the bucket can go below zero', async () => {
    const { secret, record } = await createKey({ rpm: 100, tpm: 100, concurrent: 4 });
    scriptedBackend(Array.from({ length: 150 }, () => 1000));
    const { response, settle } = await post('/v1/chat/completions', secret, chatBody());
    expect(response.status).toBe(200);
    await response.json();
    await settle();
    const refused = await post('/v1/chat/completions', secret, chatBody());
    expect(refused.response.status).toBe(429);
    expect(Number(refused.response.headers.get('retry-after'))).toBeGreaterThanOrEqual(30);
    expect((await limiter(record.keyId).inspect(record.limits)).remainingTokens).toBe(0);
  });

  it('still refuses an explicit max_tokens that cannot fit the per-minute budget', async () => {
    const { secret } = await createKey({ rpm: 100, tpm: 300, concurrent: 4 });
    scriptedBackend([]);
    const { response } = await post('/v1/chat/completions', secret, chatBody({ max_tokens: 400 }));
    expect(response.status).toBe(429);
  });
});

describe('leases', () => {
  it('renewal extends a live lease; a lease left unrenewed lapses and frees its slot', async () => {
    const stub = limiter('lease-expiry');
    const limits = { rpm: 100, tpm: 10_000, concurrent: 1 };
    const first = await stub.admit(limits, 10);
    expect((await stub.admit(limits, 10)).reason).toBe('concurrent');
    expect(await stub.renew(first.leaseId!)).toBe(true);
    await runInDurableObject(stub, (_: RateLimiter, state) => {
      const { expires_at } = state.storage.sql.exec<{ expires_at: number }>('SELECT expires_at FROM lease').one();
      expect(expires_at).toBeGreaterThan(Date.now() + LEASE_TTL_MS - 5_000);
      // As if the renewals stopped (the request's context died) LEASE_TTL_MS ago.
      state.storage.sql.exec('UPDATE lease SET expires_at = ?', Date.now() - 1);
    });
    expect(await stub.renew(first.leaseId!)).toBe(false);
    expect((await stub.admit(limits, 10)).ok).toBe(true);
  });
});

describe('a backend that goes silent', () => {
  it('ends a stream with an in-band error after the idle timeout and frees the slot', async () => {
    const { secret, record } = await createKey({ rpm: 100, tpm: 100_000, concurrent: 1 });
    const stream = new BackendStream();
    fakeBackend(() => sseResponse(stream));
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const { response, settle } = await post('/v1/chat/completions', secret, chatBody({ stream: true }), { BACKEND_IDLE_TIMEOUT_MS: '50' });
    stream.send('token', { choice: 0, tokenIds: [22557] });
    const { data, done } = await readSse(response);
    await settle();
    expect(done).toBe(true);
    expect(data.at(-1)).toMatchObject({ error: { code: 'backend_unavailable' } });
    expect(stream.cancelled).toBe(true);
    expect((await limiter(record.keyId).inspect(record.limits)).activeLeases).toBe(0);
  });

  it('answers a non-streaming request with a 503 and retry-after', async () => {
    const { secret } = await createKey();
    const stream = new BackendStream();
    fakeBackend(() => sseResponse(stream));
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const { response } = await post('/v1/chat/completions', secret, chatBody(), { BACKEND_IDLE_TIMEOUT_MS: '50' });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('1');
    expect(((await response.json()) as ErrorJson).error.code).toBe('backend_unavailable');
  });
});

describe('a non-streaming client that goes away', () => {
  // In production request.signal aborts when the client disconnects (compatibility flag enable_request_signal).
  // Under wrangler dev it never fires: the dev proxy in front of the worker forwards requests without the
  // client's signal (see the README's troubleshooting), so this drives the same signal directly.
  it('cancels the backend request and frees the slot when request.signal aborts', async () => {
    const { secret, record } = await createKey({ rpm: 100, tpm: 100_000, concurrent: 1 });
    const stream = new BackendStream();
    // As a real fetch body does, the stand-in's body ends when its request is aborted.
    const calls = fakeBackend(({ signal }) => {
      signal.addEventListener('abort', () => stream.close());
      return sseResponse(stream);
    });
    const client = new AbortController();
    const pending = callEdge('/v1/chat/completions', { method: 'POST', headers: bearer(secret), json: chatBody(), signal: client.signal });
    await vi.waitFor(() => expect(calls).toHaveLength(1));
    stream.send('token', { choice: 0, tokenIds: [22557] });
    client.abort();
    const { settle } = await pending;
    await settle();
    expect(calls[0].signal.aborted).toBe(true);
    expect((await limiter(record.keyId).inspect(record.limits)).activeLeases).toBe(0);
  });
});

describe('operator routes', () => {
  it('serves /metrics to the operator key only, with 429s counted per key', async () => {
    const admin = { ADMIN_API_KEY: 'admin-key-for-tests' };
    expect((await callEdge('/metrics', {}, { DEV_API_KEY: '' })).response.status).toBe(404);
    expect((await callEdge('/metrics', { headers: bearer('wrong-admin-key') }, admin)).response.status).toBe(401);
    const { secret, record } = await createKey({ rpm: 1, tpm: 100_000, concurrent: 4 });
    scriptedBackend([]);
    await (await post('/v1/chat/completions', secret, chatBody())).settle();
    expect((await post('/v1/chat/completions', secret, chatBody())).response.status).toBe(429);
    const { response } = await callEdge('/metrics', { headers: bearer('admin-key-for-tests') }, admin);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toContain(`edge_rate_limited_total{key="${record.keyId}",reason="requests"} 1`);
    expect(text).toMatch(/edge_requests_total\{route="\/v1\/chat\/completions",status="429"\} \d+/);
    expect(text).toContain(`edge_active_requests{key="${record.keyId}"} 0`);
    const limits = await callEdge(`/admin/keys/${record.keyId}/limits`, { headers: bearer('admin-key-for-tests') }, admin);
    expect(await limits.response.json()).toMatchObject({ activeLeases: 0, limitRequests: 1, slotsHeldInThisIsolate: 0 });
  });
});

describe('small API defects', () => {
  it("retrieves the served model by id (the openai client's models.retrieve) and 404s another", async () => {
    const { secret } = await createKey();
    const found = await callEdge(`/v1/models/${env.MODEL_ID}`, { headers: bearer(secret) });
    expect(await found.response.json()).toMatchObject({ id: env.MODEL_ID, object: 'model' });
    const missing = await callEdge('/v1/models/gpt-4', { headers: bearer(secret) });
    expect(missing.response.status).toBe(404);
    expect(((await missing.response.json()) as ErrorJson).error).toMatchObject({ code: 'model_not_found', param: 'model' });
  });

  it('calls a well-formed but impossible key a wrong key, not a malformed header', async () => {
    const { response } = await callEdge('/v1/models', { headers: { authorization: 'Bearer nope' } });
    expect(response.status).toBe(401);
    expect(((await response.json()) as ErrorJson).error.message).toBe('Incorrect API key provided.');
  });

  it('refuses a seed outside the exact-integer range at the edge, naming the field', async () => {
    const { secret } = await createKey();
    const calls = scriptedBackend([]);
    const { response } = await post('/v1/chat/completions', secret, chatBody({ seed: 2 ** 53 }));
    expect(response.status).toBe(400);
    expect(((await response.json()) as ErrorJson).error.param).toBe('seed');
    expect(calls).toHaveLength(0);
  });

  it('counts the stored system prompt in /tokenize as the chat does (system_prompt_id and model@name)', async () => {
    const { secret } = await createKey();
    await new SystemPromptStore(env.SYSTEM_PROMPTS, defaultCache()).put('tok-test', 'You are a careful assistant who answers briefly.');
    const calls = scriptedBackend([]);
    await (await post('/v1/chat/completions', secret, chatBody({ system_prompt_id: 'tok-test' }))).settle();
    const chatIds = calls[0].request.tokenIds;
    for (const extra of [{ system_prompt_id: 'tok-test' }, { model: `${env.MODEL_ID}@tok-test` }]) {
      const { response } = await post('/tokenize', secret, { ...chatBody(), ...extra });
      expect(await response.json()).toMatchObject({ count: chatIds.length, tokens: chatIds });
    }
    const missing = await post('/tokenize', secret, { ...chatBody(), system_prompt_id: 'no-such-prompt' });
    expect(missing.response.status).toBe(404);
  });
});
