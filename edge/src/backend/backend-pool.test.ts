import { afterEach, describe, expect, it, vi } from 'vitest';
import { fakeBackend } from '../test-support/edge-harness';
import { FAILURE_COOLDOWN_MS, backendOrder, openGeneration, resetBackendStates } from './backend-pool';

afterEach(() => {
  vi.restoreAllMocks();
  resetBackendStates();
});

const REQUEST = { requestId: 'r', tokenIds: [1], stream: true };

describe('backend choice', () => {
  it('prefers the least-loaded healthy backend and skips a recently failed one', async () => {
    const urls = ['http://a.test', 'http://b.test', 'http://c.test'];
    const held: ((r: Response) => void)[] = [];
    fakeBackend(({ url }) => {
      if (url.startsWith('http://c.test')) return new Response('down', { status: 503 });
      return new Promise<Response>((resolve) => held.push(resolve));
    });
    // c fails once and goes into cooldown...
    await expect(openGeneration(['http://c.test'], '', REQUEST, new AbortController().signal)).rejects.toMatchObject({ status: 503, code: 'backend_unavailable' });
    const now = Date.now();
    expect(backendOrder(urls, now).at(-1)).toBe('http://c.test');
    expect(backendOrder(urls, now + FAILURE_COOLDOWN_MS).includes('http://c.test')).toBe(true);
    // ...while a and b share load: with one request in flight on one of them, the other comes first.
    const first = openGeneration(['http://a.test', 'http://b.test'], '', REQUEST, new AbortController().signal);
    await vi.waitFor(() => expect(held).toHaveLength(1));
    const order = backendOrder(urls, now);
    const busy = order.indexOf('http://a.test') < order.indexOf('http://b.test') ? 'http://b.test' : 'http://a.test';
    expect(order.slice(0, 2)).toEqual(['http://a.test', 'http://b.test'].filter((u) => u !== busy).concat(busy));
    held[0](new Response('event: end\ndata: {}\n\n'));
    (await first).done();
  });

  it('gives up with 503 after every backend refused, without leaking their messages', async () => {
    fakeBackend(() => new Response('stack trace at /srv/backend.js:1', { status: 500 }));
    const error = await openGeneration(['http://a.test', 'http://b.test'], '', REQUEST, new AbortController().signal).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'backend_unavailable' });
    expect((error as Error).message).not.toContain('/srv');
  });
});
