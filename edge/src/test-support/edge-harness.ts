// Test support: call the worker in-process (real workerd bindings), make API keys, and stand in for the
// GPU backend with a fake that speaks shared/protocol.ts over a stubbed global fetch (tests share the
// worker's isolate, so the worker's fetch is the stub).

import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test';
import { vi } from 'vitest';
import {
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_HEADER,
  type GenerateEvent,
  type GenerateEventMap,
  type GenerateRequest,
  type ModelInfo,
  type StopRequest,
} from '../../../shared/protocol';
import { encodeSse, SseParser } from '../../../shared/sse';
import { generateKeyId, generateSecret, kvKeyForHash, sha256Hex, type KeyRecord, type RateLimits } from '../auth/api-key-store';
import app from '../index';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';

export const BACKEND = 'http://backend.test';

export function testEnv(overrides: Partial<Env> = {}): Env {
  return { ...(env as Env), BACKEND_URLS: BACKEND, HEARTBEAT_MS: '0', BACKEND_CONNECT_WAIT_MS: '2000', ...overrides };
}

export interface EdgeCall {
  response: Response;
  /** Resolves when every ctx.waitUntil promise of the request has settled (releases, cache writes). */
  settle(): Promise<void>;
}

export async function callEdge(path: string, init: RequestInit & { json?: unknown } = {}, overrides: Partial<Env> = {}): Promise<EdgeCall> {
  const ctx = createExecutionContext();
  const headers = new Headers(init.headers);
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers.set('content-type', 'application/json');
  }
  const response = await app.fetch(new Request(`http://edge${path}`, { ...init, headers, body }), testEnv(overrides), ctx);
  return { response, settle: () => waitOnExecutionContext(ctx) };
}

export async function createKey(
  limits: RateLimits = { rpm: 1000, tpm: 10_000_000, concurrent: 100 },
  revoked = false,
): Promise<{ secret: string; record: KeyRecord }> {
  const secret = generateSecret();
  const record: KeyRecord = { keyId: generateKeyId(), label: 'test', limits, created: new Date().toISOString(), revoked };
  await env.API_KEYS.put(kvKeyForHash(await sha256Hex(secret)), JSON.stringify(record));
  return { secret, record };
}

export function bearer(secret: string): Record<string, string> {
  return { authorization: `Bearer ${secret}` };
}

/** A backend stream the test drives event by event. */
export class BackendStream {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly body: ReadableStream<Uint8Array>;
  cancelled = false;

  constructor() {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
      },
      cancel: () => {
        this.cancelled = true;
      },
    });
  }

  send<K extends keyof GenerateEventMap>(event: K, data: GenerateEventMap[K]): void {
    if (!this.cancelled) this.controller.enqueue(new TextEncoder().encode(encodeSse(JSON.stringify(data), event)));
  }

  close(): void {
    if (!this.cancelled) this.controller.close();
  }
}

export interface BackendCall {
  url: string;
  request: GenerateRequest;
  headers: Headers;
  signal: AbortSignal;
}

export type BackendHandler = (call: BackendCall) => Response | Promise<Response>;

/** What the stand-in backends answer on GET /v1/model: the edge's own tokenizer and MAX_MODEL_LEN. */
export function matchingModelInfo(): ModelInfo {
  const { vocabSize, bosTokenId, eosTokenId } = getDefaultTokenizer();
  return { modelId: env.MODEL_ID as string, vocabSize, maxModelLen: Number(env.MAX_MODEL_LEN), slidingWindow: null, bosTokenId, eosTokenId };
}

/** What a stand-in backend is told on POST /v1/stop. */
export type StopHandler = (stop: StopRequest, url: string) => Response | Promise<Response>;

/**
 * Replaces fetch for every backend url; returns the generate calls seen. GET /v1/model (the edge's peer
 * check) is answered with `modelInfo` (default: a backend that matches the edge) and protocol `version`;
 * POST /v1/stop by `onStop` (default: 204).
 */
export function fakeBackend(handler: BackendHandler, peer: { modelInfo?: ModelInfo; version?: string; onStop?: StopHandler } = {}): BackendCall[] {
  const calls: BackendCall[] = [];
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const { pathname } = new URL(request.url);
    if (request.method === 'GET' && pathname === '/v1/model') {
      return Response.json(peer.modelInfo ?? matchingModelInfo(), { headers: { [PROTOCOL_VERSION_HEADER]: peer.version ?? String(PROTOCOL_VERSION) } });
    }
    if (request.method === 'POST' && pathname === '/v1/stop') {
      const stop = (await request.json()) as StopRequest;
      return peer.onStop ? peer.onStop(stop, request.url) : new Response(null, { status: 204 });
    }
    const call: BackendCall = {
      url: request.url,
      request: (await request.json()) as GenerateRequest,
      headers: request.headers,
      signal: init?.signal ?? request.signal,
    };
    calls.push(call);
    return handler(call);
  });
  return calls;
}

export function sseResponse(stream: BackendStream): Response {
  return new Response(stream.body, { headers: { 'content-type': 'text/event-stream' } });
}

/** A backend that answers with these token ids, one event per id, then finish + end. */
export function scriptedBackend(tokenIds: number[], finishReason: 'stop' | 'length' = 'stop', cachedTokens = 0): BackendCall[] {
  return fakeBackend(({ request }) => {
    const events: GenerateEvent[] = [];
    const n = request.sampling?.n ?? 1;
    for (let choice = 0; choice < n; choice++) {
      for (const id of tokenIds) events.push({ event: 'token', data: { choice, tokenIds: [id] } });
      events.push({ event: 'finish', data: { choice, finishReason } });
    }
    events.push({ event: 'end', data: { usage: { promptTokens: request.tokenIds.length, completionTokens: tokenIds.length * n, cachedTokens } } });
    return new Response(events.map((e) => encodeSse(JSON.stringify(e.data), e.event)).join(''), { headers: { 'content-type': 'text/event-stream' } });
  });
}

/** Client-side SSE reading: data payloads (JSON-parsed except [DONE]) and comments. */
export async function readSse(response: Response): Promise<{ data: unknown[]; done: boolean; raw: string }> {
  const raw = await response.text();
  const data: unknown[] = [];
  let done = false;
  for (const message of new SseParser().push(raw)) {
    if (message.data === '[DONE]') done = true;
    else data.push(JSON.parse(message.data));
  }
  return { data, done, raw };
}
