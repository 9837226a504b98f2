// Failure paths as they happen, end to end (real backend process, the edge under `wrangler dev`, and once on
// workerd's own socket; real sockets): clients that drop their connections, a backend that is stopped (SIGSTOP: it accepts connections
// and never answers) and one that is killed.

import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/checkpoint/default-model';
import { startEdgeOnSocket } from '../scripts/edge-socket';
import { createLocalKey, freePort, generateApiKey, startStack, type Stack } from '../scripts/stack';

let stack: Stack;
let key: { secret: string; keyId: string };
const edgeLog: string[] = [];
const CONCURRENT = 2;

beforeAll(async () => {
  const edgePort = await freePort();
  const persistTo = mkdtempSync(path.join(tmpdir(), `failures-edge-${edgePort}-`));
  key = await createLocalKey(persistTo, 'failures', { rpm: 1000, tpm: 10_000_000, concurrent: CONCURRENT });
  stack = await startStack({
    modelDir: await ensureDefaultModel(DEFAULT_MODEL_DIR),
    backendPort: await freePort(),
    edgePort,
    persistTo,
    apiKey: generateApiKey(),
    backendArgs: ['--threads', '1'],
    edgeVars: { BACKEND_HEADERS_TIMEOUT_MS: '1500', BACKEND_IDLE_TIMEOUT_MS: '1500' },
    inspectorPort: 0,
    log: (line) => edgeLog.push(line),
  });
}, 240_000);

afterAll(async () => {
  if (stack) {
    try {
      process.kill(stack.pids.backend, 'SIGCONT');
    } catch {
      // Already gone (the last test kills it).
    }
    await stack.stop();
  }
}, 60_000);

const chat = (extra: Record<string, unknown>) =>
  JSON.stringify({ model: stack.modelInfo.modelId, messages: [{ role: 'user', content: 'Tell me a long story.' }], ...extra });

/** POSTs a chat over its own TCP connection; resolves at the first body bytes with a way to drop the socket. */
function openStream(body: string, edgeUrl = stack.edgeUrl, secret = key.secret): Promise<{ status: number; drop(): void; rest: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const request = http.request(`${edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    });
    request.on('error', () => undefined);
    request.on('response', (response) => {
      let text = '';
      const rest = new Promise<string>((done) => response.on('end', () => done(text)).on('error', () => done(text)));
      response.setEncoding('utf8');
      response.once('data', (first: string) => {
        text += first;
        response.on('data', (more: string) => (text += more));
        resolve({ status: response.statusCode ?? 0, drop: () => request.destroy(), rest });
      });
    });
    request.on('error', reject);
    request.end(body);
  });
}

async function keyLimits(): Promise<{ activeLeases: number }> {
  const response = await fetch(`${stack.edgeUrl}/admin/keys/${key.keyId}/limits`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
  return (await response.json()) as { activeLeases: number };
}

async function edgeCounter(series: string, edgeUrl = stack.edgeUrl): Promise<number> {
  const text = await (await fetch(`${edgeUrl}/metrics`, { headers: { authorization: `Bearer ${stack.apiKey}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith(`edge_${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

async function backendMetrics(): Promise<string> {
  return (await fetch(`${stack.backendUrl}/metrics`, { headers: { authorization: `Bearer ${stack.backendToken}` } })).text();
}

async function backendGauge(name: string): Promise<number> {
  return Number(new RegExp(`^backend_${name} (\\S+)$`, 'm').exec(await backendMetrics())?.[1]);
}

const post = (body: string) =>
  fetch(`${stack.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
    body,
  });

describe('failures end to end', () => {
  it("frees a key's slots when their streaming clients close their TCP connections, through the streams' own release", async () => {
    // 400 tokens: mid-stream when dropped on most runs, and short enough that a stream which never hears of the
    // drop ends on its own well within the wait below: under a full parallel test run wrangler dev sometimes
    // does not surface the closed socket to the worker at all (both streams then run to their end).
    const ended = async () => {
      const ends = ['completed', 'client_closed', 'backend_error'].map((end) => edgeCounter(`streams_total{end="${end}"}`));
      return (await Promise.all(ends)).reduce((a, b) => a + b, 0);
    };
    const endedBefore = await ended();
    const streams = await Promise.all(Array.from({ length: CONCURRENT }, () => openStream(chat({ stream: true, max_tokens: 400 }))));
    expect(streams.map((s) => s.status)).toEqual([200, 200]);
    expect((await post(chat({ max_tokens: 2 }))).status).toBe(429);
    for (const stream of streams) stream.drop();
    // The edge notices a closed socket at its next write (a token, or a ping while the backend prefills), and
    // the stream releases its lease; a release that is lost anyway lapses with the lease (30 s, LEASE_TTL_MS).
    await vi.waitFor(async () => expect((await keyLimits()).activeLeases, edgeLog.slice(-40).join('\n')).toBe(0), { timeout: 45_000, interval: 100 });
    // Both streams ran their own finish, which releases the lease (without the waitUntil fix workerd dropped
    // the request context on the client's close, neither finish nor release ran, and nothing was counted):
    // as client_closed when the edge saw the drop, as completed when it never did (see above).
    await vi.waitFor(async () => expect((await ended()) - endedBefore).toBe(CONCURRENT), { timeout: 10_000, interval: 100 });
    await vi.waitFor(async () => expect(await backendGauge('running_sequences')).toBe(0), { timeout: 30_000, interval: 100 });
    const again = await Promise.all(Array.from({ length: CONCURRENT }, () => post(chat({ max_tokens: 2 }))));
    expect(again.map((r) => r.status)).toEqual([200, 200]);
  }, 90_000);

  it("sees the dropped streams on workerd's own socket (the deployed bundle, no wrangler proxy): they end client_closed and abort at the backend", async () => {
    // Before the paced relay (StreamSession.paced) 10-60% of these ran to max_tokens unaware of their drop; paced,
    // 1 of about 400 still did (docs/bench/edge-dev-runtime.md), so one miss in 20 is let pass. The test above
    // goes through wrangler dev's proxy, which has lost more than this socket (so it accepts every miss).
    const port = await freePort();
    const edge = await startEdgeOnSocket(stack, port);
    const edgeUrl = `http://127.0.0.1:${port}`;
    const ends = async () => ({
      clientClosed: await edgeCounter('streams_total{end="client_closed"}', edgeUrl),
      completed: await edgeCounter('streams_total{end="completed"}', edgeUrl),
    });
    try {
      const aborts = async () => Number(/^backend_requests_total\{outcome="abort"\} (\S+)$/m.exec(await backendMetrics())?.[1] ?? 0);
      const abortsBefore = await aborts();
      const rounds = 5;
      const perRound = 4;
      for (let round = 1; round <= rounds; round++) {
        const streams = await Promise.all(Array.from({ length: perRound }, () => openStream(chat({ stream: true, max_tokens: 400 }), edgeUrl, stack.apiKey)));
        expect(streams.map((s) => s.status)).toEqual(Array(perRound).fill(200));
        for (const stream of streams) stream.drop();
        // A stream that missed its drop ends too, as completed, once its 400 tokens are out.
        await vi.waitFor(
          async () => {
            const { clientClosed, completed } = await ends();
            expect(clientClosed + completed).toBe(round * perRound);
          },
          { timeout: 20_000, interval: 100 },
        );
      }
      const { clientClosed, completed } = await ends();
      expect(completed).toBeLessThanOrEqual(1);
      await vi.waitFor(async () => expect(await backendGauge('running_sequences')).toBe(0), { timeout: 30_000, interval: 100 });
      expect((await aborts()) - abortsBefore).toBe(clientClosed);
    } finally {
      await edge.dispose();
    }
  }, 120_000);

  it('ends a running stream in-band and answers new requests 503 while the backend is stopped; recovers after SIGCONT', async () => {
    const running = await openStream(chat({ stream: true, max_tokens: 3000 }));
    expect(running.status).toBe(200);
    process.kill(stack.pids.backend, 'SIGSTOP');
    try {
      const text = await running.rest;
      const payloads = text
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6));
      expect(payloads.at(-1)).toBe('[DONE]');
      expect(JSON.parse(payloads.at(-2)!)).toMatchObject({ error: { code: 'backend_unavailable' } });
      for (const stream of [true, false]) {
        const response = await post(chat({ stream, max_tokens: 2 }));
        expect(response.status).toBe(503);
        expect(response.headers.get('retry-after')).toBe('1');
        expect(((await response.json()) as { error: { code: string } }).error.code).toBe('backend_unavailable');
      }
      expect((await keyLimits()).activeLeases).toBe(0);
    } finally {
      process.kill(stack.pids.backend, 'SIGCONT');
    }
    await vi.waitFor(async () => expect((await post(chat({ max_tokens: 2 }))).status).toBe(200), { timeout: 20_000, interval: 250 });
  });

  it('answers 503 with retry-after once the backend process is killed (connection refused)', async () => {
    process.kill(stack.pids.backend, 'SIGKILL');
    await vi.waitFor(
      async () => {
        const response = await post(chat({ stream: true, max_tokens: 2 }));
        expect(response.status).toBe(503);
        expect(response.headers.get('retry-after')).toBe('1');
      },
      { timeout: 10_000, interval: 100 },
    );
  });
});
