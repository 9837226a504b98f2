// POST /v1/stop: the edge ends a request on a stop string and says so, so the backend counts a stop, while a
// stream that is only cancelled, or stopped for a client that left, counts as an abort. The answer carries what
// was generated for the request (what the edge bills a client that left). Real app, real client, fake model.

import { afterEach, describe, expect, it } from 'vitest';
import type { ErrorBody, GenerateEvent, StopResponse, Usage } from '../../../shared/protocol';
import { SseParser } from '../../../shared/sse';
import { createBackendApp } from './app';
import { FakeEngine } from './fake-engine';
import { GenerationClient } from './generation-client';

const TOKEN = 'stop-secret';
const AUTH = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const clients: GenerationClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
});

async function setup() {
  const engine = new FakeEngine({ vocabSize: 64, maxModelLen: 4096, maxSequences: 8 });
  const client = GenerationClient.inProcess({ engine: { kind: 'fake', options: {} }, limits: { prefixCacheSize: 0 } }, engine);
  clients.push(client);
  const app = createBackendApp({ client, backendToken: TOKEN });
  await client.whenReady();
  return { app, client, engine };
}

function post(path: string, body: unknown, headers: Record<string, string> = AUTH): Request {
  return new Request(`http://backend${path}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers });
}

/** A long stream (it would run to 4000 tokens) that has sent its first token event, and its event reader. */
async function openLongStream(app: ReturnType<typeof createBackendApp>, requestId: string, n = 1) {
  const response = await app.request(post('/v1/generate', { requestId, tokenIds: [1, 5, 7], sampling: { maxTokens: 4000, ignoreEos: true, n }, stream: true }));
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const seen: GenerateEvent[] = [];
  const next = async (): Promise<boolean> => {
    const chunk = await reader.read();
    if (chunk.done) return false;
    for (const message of parser.push(decoder.decode(chunk.value, { stream: true })))
      seen.push({ event: message.event, data: JSON.parse(message.data) } as GenerateEvent);
    return true;
  };
  while (!seen.some((event) => event.event === 'token')) expect(await next()).toBe(true);
  /** Reads to the end of the body. */
  const rest = async () => {
    while (await next());
    return seen;
  };
  return { reader, rest };
}

/** The usage a stream's own `end` event carried, and the token ids its events carried (an independent count). */
function streamCounts(events: GenerateEvent[]): { usage: Usage; tokenIds: number } {
  const end = events.find((event) => event.event === 'end');
  expect(end, 'the stream ended with an end event').toBeDefined();
  const tokenIds = events.reduce((sum, event) => sum + (event.event === 'token' ? event.data.tokenIds.length : 0), 0);
  return { usage: (end!.data as { usage: Usage }).usage, tokenIds };
}

function outcomes(client: GenerationClient): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const match of client.metrics.render().matchAll(/^backend_requests_total\{outcome="([a-z_]+)"\} (\d+)$/gm)) counts[match[1]] = Number(match[2]);
  return counts;
}

async function errorOf(response: Response): Promise<ErrorBody['error']> {
  return ((await response.json()) as ErrorBody).error;
}

describe('POST /v1/stop', () => {
  it('ends the named request with finish "stop" on every choice and counts a stop; the cancel that follows is no abort', async () => {
    const { app, client, engine } = await setup();
    const initial = engine.freeSequences();
    const stream = await openLongStream(app, 'stopped-by-edge', 2);
    const stopped = await app.request(post('/v1/stop', { requestId: 'stopped-by-edge' }));
    expect(stopped.status).toBe(200);
    const events = await stream.rest();
    const counts = streamCounts(events);
    expect(counts.usage.completionTokens).toBe(counts.tokenIds);
    expect(((await stopped.json()) as StopResponse).usage).toEqual(counts.usage);
    const finishes = events.filter((event) => event.event === 'finish');
    expect(finishes.map((event) => event.data)).toEqual(
      expect.arrayContaining([
        { choice: 0, finishReason: 'stop' },
        { choice: 1, finishReason: 'stop' },
      ]),
    );
    expect(events.at(-1)!.event).toBe('end');
    await stream.reader.cancel();
    await client.idle();
    expect(outcomes(client)).toMatchObject({ stop: 1 });
    expect(outcomes(client).abort).toBeUndefined();
    expect(engine.freeSequences()).toBe(initial);
  });

  it('leaves a stream that is only cancelled counted as an abort', async () => {
    const { app, client } = await setup();
    const stream = await openLongStream(app, 'client-left');
    await stream.reader.cancel();
    await client.idle();
    expect(outcomes(client)).toMatchObject({ abort: 1 });
    expect(outcomes(client).stop).toBeUndefined();
  });

  it('stops a request whose client left as an abort, answering with every token it generated, also those not read yet', async () => {
    const { app, client, engine } = await setup();
    const initial = engine.freeSequences();
    const stream = await openLongStream(app, 'client-gone', 2);
    const stopped = await app.request(post('/v1/stop', { requestId: 'client-gone', reason: 'client_closed' }));
    expect(stopped.status).toBe(200);
    const { usage } = (await stopped.json()) as StopResponse;
    // The body the edge would have stopped reading still holds every token event: their count is the reference.
    const events = await stream.rest();
    const counts = streamCounts(events);
    expect(usage).toEqual(counts.usage);
    expect(usage).toMatchObject({ promptTokens: 3, completionTokens: counts.tokenIds });
    expect(usage.completionTokens).toBeGreaterThan(0);
    expect(events.filter((event) => event.event === 'finish').map((event) => event.data)).toEqual(
      expect.arrayContaining([
        { choice: 0, finishReason: 'abort' },
        { choice: 1, finishReason: 'abort' },
      ]),
    );
    await client.idle();
    expect(outcomes(client)).toMatchObject({ abort: 1 });
    expect(outcomes(client).stop).toBeUndefined();
    expect(engine.freeSequences()).toBe(initial);
  });

  it('answers a request that already ended with its usage, 404 for an id it never saw, and touches no other request', async () => {
    const { app, client } = await setup();
    const done = await app.request(post('/v1/generate', { requestId: 'finished', tokenIds: [1, 2], sampling: { maxTokens: 2, ignoreEos: true } }));
    expect(done.status).toBe(200);
    const finished = (await done.json()) as { usage: Usage };
    const other = await openLongStream(app, 'bystander');
    for (const reason of ['stop_string', 'client_closed']) {
      const late = await app.request(post('/v1/stop', { requestId: 'finished', reason }));
      expect(late.status).toBe(200);
      expect(((await late.json()) as StopResponse).usage).toEqual({ promptTokens: 2, completionTokens: 2, cachedTokens: 0 });
    }
    expect(finished.usage).toEqual({ promptTokens: 2, completionTokens: 2, cachedTokens: 0 });
    for (const requestId of ['no-such-request', 'BYSTANDER']) {
      const response = await app.request(post('/v1/stop', { requestId }));
      expect(response.status, requestId).toBe(404);
      expect(await errorOf(response)).toMatchObject({ code: 'not_found', param: 'requestId' });
    }
    // The bystander is still generating: it ends only when its own client leaves, as an abort.
    await other.reader.cancel();
    await client.idle();
    expect(outcomes(client)).toMatchObject({ length: 1, abort: 1 });
    expect(outcomes(client).stop).toBeUndefined();
  });

  it.each([
    ['no requestId', {}, 'requestId'],
    ['a number', { requestId: 7 }, 'requestId'],
    ['an empty id', { requestId: '' }, 'requestId'],
    ['an id over 256 characters', { requestId: 'x'.repeat(257) }, 'requestId'],
    ['an array', [], 'requestId'],
    ['an unknown reason', { requestId: 'r', reason: 'bored' }, 'reason'],
    ['a body that is not JSON', '{not json', null],
  ])('answers 400 naming the field for %s', async (_label, body, param) => {
    const { app } = await setup();
    const response = await app.request(post('/v1/stop', body));
    expect(response.status).toBe(400);
    expect(await errorOf(response)).toMatchObject({ code: 'invalid_request', param });
  });

  it('refuses a body over its small limit with a 413, and a missing or wrong backend token with a 401', async () => {
    const { app, client } = await setup();
    const huge = await app.request(post('/v1/stop', { requestId: 'r', padding: ' '.repeat(8192) }));
    expect(huge.status).toBe(413);
    const stream = await openLongStream(app, 'guarded');
    for (const headers of [{ 'content-type': 'application/json' }, { ...AUTH, authorization: 'Bearer wrong' }]) {
      const refused = await app.request(post('/v1/stop', { requestId: 'guarded' }, headers));
      expect(refused.status).toBe(401);
      expect((await errorOf(refused)).code).toBe('invalid_api_key');
    }
    await stream.reader.cancel();
    await client.idle();
    expect(outcomes(client)).toMatchObject({ abort: 1, unauthorized: 2 });
  });
});
