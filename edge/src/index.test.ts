import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { kvKeyForHash, sha256Hex } from './auth/api-key-store';
import { bearer, callEdge, createKey } from './test-support/edge-harness';

type ErrorJson = { error: { message: string; type: string; param: string | null; code: string } };

describe('routing and auth', () => {
  it('serves /health without a key', async () => {
    const { response } = await callEdge('/health');
    expect(response.status).toBe(200);
  });

  it('refuses a missing, malformed, unknown or revoked key with an OpenAI-shaped 401', async () => {
    const revoked = await createKey(undefined, true);
    const cases: Record<string, string>[] = [
      {},
      { authorization: 'Basic abc' },
      { authorization: 'Bearer' },
      { authorization: 'Bearer a b' },
      bearer('sk-edge-unknown-key-0000'),
      bearer(revoked.secret),
    ];
    for (const headers of cases) {
      const { response } = await callEdge('/v1/models', { headers });
      expect(response.status, JSON.stringify(headers)).toBe(401);
      const body = (await response.json()) as ErrorJson;
      expect(body.error.code).toBe('invalid_api_key');
      expect(body.error.type).toBe('authentication_error');
    }
  });

  it('accepts a KV key and the DEV_API_KEY, and lists the served model', async () => {
    const { secret } = await createKey();
    for (const [headers, overrides] of [
      [bearer(secret), {}],
      [bearer('dev-key-for-tests'), { DEV_API_KEY: 'dev-key-for-tests' }],
    ] as const) {
      const { response } = await callEdge('/v1/models', { headers }, overrides);
      expect(response.status).toBe(200);
      const body = (await response.json()) as { object: string; data: { id: string; object: string }[] };
      expect(body.object).toBe('list');
      expect(body.data[0]).toMatchObject({ id: env.MODEL_ID, object: 'model' });
    }
    // An empty DEV_API_KEY accepts nothing.
    const { response } = await callEdge('/v1/models', { headers: bearer('dev-key-for-tests') }, { DEV_API_KEY: '' });
    expect(response.status).toBe(401);
  });

  it('stops accepting a key once it is revoked in KV (isolate auth cache off)', async () => {
    const { secret, record } = await createKey();
    const noCache = { AUTH_CACHE_TTL_MS: '0' };
    expect((await callEdge('/v1/models', { headers: bearer(secret) }, noCache)).response.status).toBe(200);
    const kvKey = kvKeyForHash(await sha256Hex(secret));
    await env.API_KEYS.put(kvKey, JSON.stringify({ ...record, revoked: true }));
    expect((await callEdge('/v1/models', { headers: bearer(secret) }, noCache)).response.status).toBe(401);
  });

  it('stores keys only as SHA-256 hashes', async () => {
    // FIPS 180-2 test vector for "abc".
    expect(await sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const { secret } = await createKey();
    const listed = await env.API_KEYS.list();
    expect(listed.keys.every((k) => /^key:[0-9a-f]{64}$/.test(k.name))).toBe(true);
    expect(listed.keys.some((k) => k.name.includes(secret))).toBe(false);
  });

  it('answers unknown routes with an OpenAI-shaped 404', async () => {
    const { response } = await callEdge('/nope');
    expect(response.status).toBe(404);
    expect(((await response.json()) as ErrorJson).error.code).toBe('not_found');
  });
});
