import { env, runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { bearer, callEdge, createKey, scriptedBackend } from '../test-support/edge-harness';
import { RateLimiter } from './rate-limiter';

afterEach(() => {
  vi.restoreAllMocks();
});

function stubFor(keyId: string) {
  return env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(keyId));
}

/** A settled request of `promptTokens` prompt tokens and nothing generated. */
const used = (promptTokens: number) => ({ promptTokens, completionTokens: 0, cachedTokens: 0 });
const body = (extra: Record<string, unknown> = {}) => ({ model: env.MODEL_ID, messages: [{ role: 'user', content: 'Hello there' }], max_tokens: 10, ...extra });

describe('RateLimiter (Durable Object)', () => {
  it('admits exactly N of M simultaneous requests over HTTP', async () => {
    const limit = 5;
    const { secret } = await createKey({ rpm: limit, tpm: 1_000_000, concurrent: 100 });
    scriptedBackend(getDefaultTokenizer().encode('ok'));
    const calls = await Promise.all(
      Array.from({ length: 17 }, () => callEdge('/v1/chat/completions', { method: 'POST', headers: bearer(secret), json: body() })),
    );
    const statuses = calls.map((c) => c.response.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(limit);
    expect(statuses.filter((s) => s === 429)).toHaveLength(17 - limit);
    const refused = calls.find((c) => c.response.status === 429)!.response;
    const error = (await refused.json()) as { error: { code: string; type: string } };
    expect(error.error).toMatchObject({ code: 'rate_limit_exceeded', type: 'rate_limit_error' });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    await Promise.all(calls.map((c) => c.settle()));
  });

  it('admits exactly N of M simultaneous RPC admissions with a concurrency cap of N', async () => {
    const stub = stubFor('burst-concurrent');
    const limits = { rpm: 1000, tpm: 1_000_000, concurrent: 3 };
    const results = await Promise.all(Array.from({ length: 20 }, () => stub.admit(limits, 10)));
    expect(results.filter((r) => r.ok)).toHaveLength(3);
    expect(results.filter((r) => r.reason === 'concurrent')).toHaveLength(17);
    // Releasing one lease makes room for exactly one more.
    await stub.release(limits, results.find((r) => r.ok)!.leaseId!, used(10));
    const again = await Promise.all(Array.from({ length: 4 }, () => stub.admit(limits, 10)));
    expect(again.filter((r) => r.ok)).toHaveLength(1);
  });

  it('reserves prompt + max_tokens and refunds the unused part when the request ends', async () => {
    const { secret, record } = await createKey({ rpm: 100, tpm: 10_000, concurrent: 10 });
    const tokenizer = getDefaultTokenizer();
    const completion = tokenizer.encode('one two three');
    const calls = scriptedBackend(completion);
    const { response, settle } = await callEdge('/v1/chat/completions', { method: 'POST', headers: bearer(secret), json: body({ max_tokens: 500 }) });
    const promptLength = calls[0].request.tokenIds.length;
    // At admission the whole reservation is taken...
    expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBe(10_000 - promptLength - 500);
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('10000');
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('100');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('99');
    expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(/^\d+(\.\d+)?(ms|s)$|^\d+m[\d.]+s$/);
    expect(response.headers.get('x-ratelimit-reset-tokens')).toMatch(/^\d+(\.\d+)?(ms|s)$|^\d+m[\d.]+s$/);
    await response.json();
    await settle();
    // ...and after it ends only prompt + generated tokens stay charged (refill adds a little with time).
    const state = await stubFor(record.keyId).inspect(record.limits);
    const charged = 10_000 - state.remainingTokens;
    expect(charged).toBeLessThanOrEqual(promptLength + completion.length);
    expect(charged).toBeGreaterThan(promptLength + completion.length - 20);
    expect(state.activeLeases).toBe(0);
  });

  it('refuses tokens beyond the per-minute budget and says why', async () => {
    const { secret } = await createKey({ rpm: 100, tpm: 300, concurrent: 10 });
    scriptedBackend([]);
    const { response } = await callEdge('/v1/chat/completions', { method: 'POST', headers: bearer(secret), json: body({ max_tokens: 400 }) });
    expect(response.status).toBe(429);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/too large/i);
  });

  it('keeps its state in Durable Object storage, where runInDurableObject can read it', async () => {
    const stub = stubFor('storage-check');
    const limits = { rpm: 60, tpm: 6000, concurrent: 2 };
    const admitted = await stub.admit(limits, 600);
    expect(admitted.ok).toBe(true);
    await runInDurableObject(stub, (instance: RateLimiter, state) => {
      expect(instance).toBeInstanceOf(RateLimiter);
      const leases = state.storage.sql.exec<{ id: string; tokens: number }>('SELECT id, tokens FROM lease').toArray();
      expect(leases).toEqual([{ id: admitted.leaseId, tokens: 600 }]);
      const buckets = Object.fromEntries(
        state.storage.sql
          .exec<{ name: string; level: number }>('SELECT name, level FROM bucket')
          .toArray()
          .map((r) => [r.name, r.level]),
      );
      expect(buckets.requests).toBeCloseTo(59, 0);
      expect(buckets.tokens).toBeCloseTo(5400, -1);
    });
    // Release is idempotent: a second release of the same lease refunds nothing more.
    const betweenStarted = Date.now(); // before the first call: its processing time counts too
    const first = await stub.release(limits, admitted.leaseId!, used(100));
    const second = await stub.release(limits, admitted.leaseId!, used(100));
    // Only the refill of the time between the two calls (tpm / 60000 per ms, slow on a loaded machine), never a second refund.
    const refill = (limits.tpm / 60_000) * (Date.now() - betweenStarted);
    expect(second.remainingTokens - first.remainingTokens).toBeLessThan(refill + 5);
    expect(second.remainingTokens - first.remainingTokens).toBeLessThan(400); // a second refund would add 500
    expect(first.remainingTokens).toBeGreaterThanOrEqual(5900 - 1);
  });

  it('releases the lease when the client disconnects mid-stream', async () => {
    const { secret, record } = await createKey({ rpm: 100, tpm: 100_000, concurrent: 1 });
    const { BackendStream, fakeBackend, sseResponse } = await import('../test-support/edge-harness');
    const stream = new BackendStream();
    fakeBackend(() => sseResponse(stream));
    const { response, settle } = await callEdge('/v1/chat/completions', {
      method: 'POST',
      headers: bearer(secret),
      json: body({ stream: true, max_tokens: 1000 }),
    });
    stream.send('token', { choice: 0, tokenIds: [22557] });
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel();
    await settle();
    const state = await stubFor(record.keyId).inspect(record.limits);
    expect(state.activeLeases).toBe(0);
    // Charged: the prompt and the one token seen, not the 1000 reserved.
    expect(100_000 - state.remainingTokens).toBeLessThan(400); // a second refund would add 500
  });
});
