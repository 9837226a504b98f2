// A non-streaming request whose client leaves is the client's doing, not the backend's: the backend that
// served it stays in the healthy part of the pool's order (no cooldown), as after a stream whose client left.

import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { backendPool } from '../backend/backend-pool';
import { readConfig } from '../config';
import app from '../index';
import { BackendStream, bearer, createKey, fakeBackend, sseResponse, testEnv } from '../test-support/edge-harness';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('non-streaming generation', () => {
  it('a client that leaves puts no backend into its cooldown', async () => {
    const { secret } = await createKey();
    const stream = new BackendStream();
    const calls = fakeBackend(() => sseResponse(stream));
    // Its own env object: the test reads the pool of the config the request resolved.
    const edgeEnv = testEnv({ BACKEND_URLS: 'http://a.backend.test,http://b.backend.test' });
    const client = new AbortController();
    const ctx = createExecutionContext();
    const request = new Request('http://edge/v1/chat/completions', {
      method: 'POST',
      headers: { ...bearer(secret), 'content-type': 'application/json' },
      body: JSON.stringify({ model: env.MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 16 }),
      signal: client.signal,
    });
    const pending = app.fetch(request, edgeEnv, ctx);
    await vi.waitFor(() => expect(calls).toHaveLength(1));
    const served = new URL(calls[0].url).origin;
    // The stand-in's body ends when its fetch is aborted, as a real connection's would.
    calls[0].signal.addEventListener('abort', () => stream.close());
    client.abort();
    await Promise.resolve(pending).catch(() => undefined);
    await waitOnExecutionContext(ctx);
    // Healthy backends tie-break at random: the one that served comes first in some of 40 orders unless it cools down.
    const pool = backendPool(readConfig(edgeEnv));
    const firsts = Array.from({ length: 40 }, () => pool.order()[0]);
    expect(firsts).toContain(served);
  });
});
