import { afterEach, describe, expect, it, vi } from 'vitest';
import { fakeBackend, matchingModelInfo } from '../test-support/edge-harness';
import { FAILURE_COOLDOWN_MS, backendOrder, openGeneration, resetBackendStates } from './backend-pool';

afterEach(() => {
  vi.restoreAllMocks();
  resetBackendStates();
});

const REQUEST = { requestId: 'r', tokenIds: [1], stream: true };
const pool = (backendUrls: string[], backendHeadersTimeoutMs = 10_000) => ({ backendUrls, backendToken: '', backendHeadersTimeoutMs });
const peer = () => {
  const { vocabSize, bosTokenId, eosTokenId, maxModelLen } = matchingModelInfo();
  return { vocabSize, bosTokenId, eosTokenId, maxModelLen };
};

describe('backend choice', () => {
  it('prefers the least-loaded healthy backend and skips a recently failed one', async () => {
    const urls = ['http://a.test', 'http://b.test', 'http://c.test'];
    const held: ((r: Response) => void)[] = [];
    fakeBackend(({ url }) => {
      if (url.startsWith('http://c.test')) return new Response('down', { status: 503 });
      return new Promise<Response>((resolve) => held.push(resolve));
    });
    // c fails once and goes into cooldown...
    await expect(openGeneration(pool(['http://c.test']), peer(), REQUEST, new AbortController().signal)).rejects.toMatchObject({
      status: 503,
      code: 'backend_unavailable',
    });
    const now = Date.now();
    expect(backendOrder(urls, now).at(-1)).toBe('http://c.test');
    expect(backendOrder(urls, now + FAILURE_COOLDOWN_MS).includes('http://c.test')).toBe(true);
    // ...while a and b share load: with one request in flight on one of them, the other comes first.
    const first = openGeneration(pool(['http://a.test', 'http://b.test']), peer(), REQUEST, new AbortController().signal);
    await vi.waitFor(() => expect(held).toHaveLength(1));
    const order = backendOrder(urls, now);
    const busy = order.indexOf('http://a.test') < order.indexOf('http://b.test') ? 'http://b.test' : 'http://a.test';
    expect(order.slice(0, 2)).toEqual(['http://a.test', 'http://b.test'].filter((u) => u !== busy).concat(busy));
    held[0](new Response('event: end\ndata: {}\n\n'));
    (await first).done();
  });

  it('gives up with 503 after every backend refused, without leaking their messages', async () => {
    fakeBackend(() => new Response('stack trace at /srv/backend.js:1', { status: 500 }));
    const error = await openGeneration(pool(['http://a.test', 'http://b.test']), peer(), REQUEST, new AbortController().signal).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'backend_unavailable' });
    expect((error as Error).message).not.toContain('/srv');
  });

  it('abandons a backend that accepts the request but sends no headers, marks it failed and tries the next', async () => {
    const urls = ['http://wedged.test', 'http://ok.test'];
    // The wedged one comes first: the other carries load.
    fakeBackend(({ url, signal }) => {
      if (url.startsWith('http://ok.test')) return new Response('event: end\ndata: {}\n\n');
      return new Promise<Response>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    });
    const busy = openGeneration(pool(['http://ok.test']), peer(), REQUEST, new AbortController().signal);
    const held = await busy;
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const lease = await openGeneration(pool(urls, 50), peer(), REQUEST, new AbortController().signal);
    expect(logged).toHaveBeenCalledWith(expect.stringContaining('http://wedged.test sent no headers within 50 ms'));
    held.done();
    expect(lease.url).toBe('http://ok.test');
    lease.done();
    expect(backendOrder(urls).at(-1)).toBe('http://wedged.test');
  });

  it('gives up with a retryable 503 when the only backend never answers', async () => {
    fakeBackend(({ signal }) => new Promise<Response>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))));
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const error = await openGeneration(pool(['http://wedged.test'], 50), peer(), REQUEST, new AbortController().signal).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'backend_unavailable', headers: { 'retry-after': '1' } });
  });

  it('refuses a backend that serves another vocabulary or speaks another protocol version, with a clear log line', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const calls = fakeBackend(() => new Response('event: end\ndata: {}\n\n'), { modelInfo: { ...matchingModelInfo(), vocabSize: 32768, eosTokenId: 2 } });
    const error = await openGeneration(pool(['http://v3.test']), peer(), REQUEST, new AbortController().signal).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'backend_unavailable' });
    expect(calls).toHaveLength(0);
    expect(logged).toHaveBeenCalledWith(
      expect.stringMatching(/refusing backend http:\/\/v3\.test: it serves vocabulary 32768 .* the edge's tokenizer has 32000/),
    );

    resetBackendStates();
    fakeBackend(() => new Response('event: end\ndata: {}\n\n'), { version: '2' });
    await expect(openGeneration(pool(['http://v2.test']), peer(), REQUEST, new AbortController().signal)).rejects.toMatchObject({ status: 503 });
    expect(logged).toHaveBeenCalledWith(expect.stringContaining('http://v2.test: it speaks protocol version 2, but this edge speaks 1'));
  });

  it('refuses a backend whose context is shorter than the edge promises, and uses a matching one', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const short = { ...matchingModelInfo(), maxModelLen: 512 };
    fakeBackend(() => new Response('event: end\ndata: {}\n\n'), { modelInfo: short });
    await expect(openGeneration(pool(['http://short.test']), peer(), REQUEST, new AbortController().signal)).rejects.toMatchObject({ status: 503 });
    expect(logged).toHaveBeenCalledWith(expect.stringContaining('accepts 512 tokens of context'));
  });
});
