import { env, SELF } from 'cloudflare:test';
import { expect, it } from 'vitest';

it('serves health', async () => {
  const res = await SELF.fetch('http://edge/health');
  expect(res.status).toBe(200);
  const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName('k'));
  expect(await stub.ping()).toBe('pong');
  expect((env as unknown as { FIXTURE_TOKENIZER_V1: ArrayBuffer }).FIXTURE_TOKENIZER_V1.byteLength).toBe(493443);
});
