import { afterEach, describe, expect, it, vi } from 'vitest';
import { fakeBackend, matchingModelInfo } from '../test-support/edge-harness';
import { BackendPool, FAILURE_COOLDOWN_MS } from './backend-pool';

afterEach(() => {
  vi.restoreAllMocks();
});

const REQUEST = { requestId: 'r', tokenIds: [1], stream: true };
const pool = (backendUrls: string[], backendHeadersTimeoutMs = 10_000) => new BackendPool({ backendUrls, backendToken: '', backendHeadersTimeoutMs });
const open = (backends: BackendPool) => backends.open(peer(), REQUEST, new AbortController().signal);
const peer = () => {
  const { vocabSize, bosTokenId, eosTokenId, maxModelLen } = matchingModelInfo();
  return { vocabSize, bosTokenId, eosTokenId, maxModelLen };
};

describe('backend choice', () => {
  it('prefers the least-loaded healthy backend and skips a recently failed one', async () => {
    const urls = ['http://a.test', 'http://b.test', 'http://c.test'];
    const held: { url: string; answer: (r: Response) => void }[] = [];
    const calls = fakeBackend(({ url }) => {
      if (url.startsWith('http://c.test')) return new Response('down', { status: 503 });
      return new Promise<Response>((answer) => held.push({ url: new URL(url).origin, answer }));
    });
    const backends = pool(urls);
    // Each of three requests starts on a different backend (the least loaded); the one that met c's 503 goes on.
    const opening = [open(backends), open(backends), open(backends)];
    await vi.waitFor(() => expect(held).toHaveLength(3));
    expect(calls.filter((c) => c.url.startsWith('http://c.test'))).toHaveLength(1);
    const load = (url: string) => held.filter((h) => h.url === url).length;
    const [lighter, heavier] = ['http://a.test', 'http://b.test'].sort((x, y) => load(x) - load(y));
    expect(load(heavier)).toBe(2);
    // c is in cooldown: last, whatever its load...
    const now = Date.now();
    expect(backends.order(now)).toEqual([lighter, heavier, 'http://c.test']);
    // ...and first again once the cooldown is over, being the least loaded.
    expect(backends.order(now + FAILURE_COOLDOWN_MS)).toEqual(['http://c.test', lighter, heavier]);
    for (const h of held) h.answer(new Response('event: end\ndata: {}\n\n'));
    for (const lease of await Promise.all(opening)) lease.done();
    expect(backends.order(now).at(-1)).toBe('http://c.test');
  });

  it('goes on past a 429 without starting its cooldown and past a 401 with it, but never past a 400', async () => {
    fakeBackend(({ url }) => {
      const { host } = new URL(url);
      if (host === 'full.test') return new Response('', { status: 429 });
      if (host === 'wrong-token.test') return new Response('', { status: 401 });
      if (host === 'strict.test') return new Response('', { status: 400 });
      return new Response('event: end\ndata: {}\n\n');
    });
    const backends = pool(['http://full.test', 'http://wrong-token.test', 'http://ok.test']);
    // Three requests at once: each backend is some request's first attempt.
    const leases = await Promise.all([open(backends), open(backends), open(backends)]);
    expect(leases.map((lease) => lease.url)).toEqual(['http://ok.test', 'http://ok.test', 'http://ok.test']);
    expect(backends.order()).toEqual(['http://full.test', 'http://ok.test', 'http://wrong-token.test']);
    for (const lease of leases) lease.done();

    const strict = pool(['http://strict.test', 'http://ok.test']);
    const outcomes = await Promise.allSettled([open(strict), open(strict)]);
    const refused = outcomes.filter((o) => o.status === 'rejected');
    expect(refused).toEqual([expect.objectContaining({ reason: expect.objectContaining({ status: 400, code: 'invalid_request' }) })]);
    // A 400 is the request's fault: strict.test is not in cooldown, and comes before the loaded ok.test.
    expect(strict.order()).toEqual(['http://strict.test', 'http://ok.test']);
  });

  it('gives up with 503 after every backend refused, without leaking their messages', async () => {
    fakeBackend(() => new Response('stack trace at /srv/backend.js:1', { status: 500 }));
    const error = await open(pool(['http://a.test', 'http://b.test'])).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'backend_unavailable' });
    expect((error as Error).message).not.toContain('/srv');
  });

  it('abandons a backend that accepts the request but sends no headers, marks it failed and tries the next', async () => {
    const urls = ['http://wedged.test', 'http://ok.test'];
    fakeBackend(({ url, signal }) => {
      if (url.startsWith('http://ok.test')) return new Response('event: end\ndata: {}\n\n');
      return new Promise<Response>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    });
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const backends = pool(urls, 50);
    // Two requests at once start on different backends (least loaded first): one of them meets the wedged one.
    const leases = await Promise.all([open(backends), open(backends)]);
    expect(logged).toHaveBeenCalledWith(expect.stringContaining('http://wedged.test sent no headers within 50 ms'));
    expect(leases.map((lease) => lease.url)).toEqual(['http://ok.test', 'http://ok.test']);
    for (const lease of leases) lease.done();
    expect(backends.order()).toEqual(['http://ok.test', 'http://wedged.test']);
  });

  it('gives up with a retryable 503 when the only backend never answers', async () => {
    fakeBackend(({ signal }) => new Promise<Response>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))));
    vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const error = await open(pool(['http://wedged.test'], 50)).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'backend_unavailable', headers: { 'retry-after': '1' } });
  });

  it('refuses a backend that serves another vocabulary or speaks another protocol version, with a clear log line', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const calls = fakeBackend(() => new Response('event: end\ndata: {}\n\n'), { modelInfo: { ...matchingModelInfo(), vocabSize: 32768, eosTokenId: 2 } });
    const error = await open(pool(['http://v3.test'])).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'backend_unavailable' });
    expect(calls).toHaveLength(0);
    expect(logged).toHaveBeenCalledWith(
      expect.stringMatching(/refusing backend http:\/\/v3\.test: it serves vocabulary 32768 .* the edge's tokenizer has 32000/),
    );

    fakeBackend(() => new Response('event: end\ndata: {}\n\n'), { version: '2' });
    await expect(open(pool(['http://v2.test']))).rejects.toMatchObject({ status: 503 });
    expect(logged).toHaveBeenCalledWith(expect.stringContaining('http://v2.test: it speaks protocol version 2, but this edge speaks 1'));
  });

  it('refuses a backend whose context is shorter than the edge promises, and uses a matching one', async () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const short = { ...matchingModelInfo(), maxModelLen: 512 };
    fakeBackend(() => new Response('event: end\ndata: {}\n\n'), { modelInfo: short });
    await expect(open(pool(['http://short.test']))).rejects.toMatchObject({ status: 503 });
    expect(logged).toHaveBeenCalledWith(expect.stringContaining('accepts 512 tokens of context'));
  });
});
