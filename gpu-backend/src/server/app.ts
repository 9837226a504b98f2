// The backend's HTTP surface (Hono): token ids in, SSE of token ids out, plus health, readiness,
// model info and Prometheus metrics. Generation itself happens behind GenerationClient.

import { timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import {
  BACKEND_AUTH_HEADER,
  errorBody,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_HEADER,
  type ErrorCode,
  type GenerateEvent,
  type GenerateResponse,
} from '../../../shared/protocol';
import { encodeSse, encodeSseComment } from '../../../shared/sse';
import type { GenerationClient } from './generation-client';
import type { GrammarChecker } from './grammar/grammar-checker';
import { grammarSourceOf, MAX_GRAMMAR_TEXT } from './grammar/grammar-source';
import { RequestSchema, type ValidatedGenerateRequest } from './request-schema';

export interface BackendAppOptions {
  client: GenerationClient;
  /** Shared secret the edge sends as `authorization: Bearer <token>`; unset means no check. */
  backendToken?: string;
  /** SSE comment interval while a stream has nothing to say (long prefill), so proxies keep it open. */
  heartbeatMs?: number;
  /** Compiles grammars before admission (400/413); absent: requests with a grammar get a 400. */
  grammarChecker?: GrammarChecker;
}

const RETRY_AFTER_SECONDS = '1';
/** Token ids as JSON take ~6 bytes each: room for far more than any context length. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
const OPEN_PATHS = new Set(['/health', '/ready']);

function tokenMatches(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer (.+)$/.exec(header ?? '');
  if (!match) return false;
  const given = Buffer.from(match[1]);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function refuse(c: Context, status: 401 | 404 | 500 | 503, code: ErrorCode, message: string): Response {
  if (status === 503) c.header('retry-after', RETRY_AFTER_SECONDS);
  return c.json(errorBody(code, message), status);
}

export function createBackendApp(options: BackendAppOptions): Hono {
  const { client } = options;
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const expectedToken = options.backendToken ? Buffer.from(options.backendToken) : null;
  let schema: RequestSchema | null = null;
  const app = new Hono();

  app.use('*', async function protocolAndAuth(c, next) {
    c.header(PROTOCOL_VERSION_HEADER, String(PROTOCOL_VERSION));
    if (expectedToken && !OPEN_PATHS.has(c.req.path) && !tokenMatches(c.req.header(BACKEND_AUTH_HEADER), expectedToken)) {
      client.metrics.countRequest('unauthorized');
      return refuse(c, 401, 'invalid_api_key', 'Missing or wrong backend token.');
    }
    await next();
  });

  app.get('/health', (c) => c.json({ status: 'ok' }));
  app.get('/ready', (c) => (client.isReady() ? c.json({ status: 'ready' }) : refuse(c, 503, 'backend_unavailable', 'The model is not loaded yet.')));
  app.get('/v1/model', (c) => (client.modelInfo ? c.json(client.modelInfo) : refuse(c, 503, 'backend_unavailable', 'The model is not loaded yet.')));
  app.get('/metrics', (c) => c.text(client.metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }));

  app.post('/v1/generate', bodyLimit({ maxSize: MAX_BODY_BYTES, onError: (c) => c.json(errorBody('invalid_request', `The body exceeds ${MAX_BODY_BYTES} bytes.`), 413) }), async (c) => {
    if (!client.isReady() || !client.modelInfo || !client.limits) {
      client.metrics.countRequest('not_ready');
      return refuse(c, 503, 'backend_unavailable', 'The model is not loaded yet.');
    }
    schema ??= new RequestSchema({ vocabSize: client.modelInfo.vocabSize, maxModelLen: client.modelInfo.maxModelLen, maxChoices: client.limits.maxRunning });
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      client.metrics.countRequest('invalid_request');
      return c.json(errorBody('invalid_request', 'The body must be JSON.'), 400);
    }
    const parsed = schema.parse(body);
    if (!parsed.ok) {
      client.metrics.countRequest(parsed.body.error.code === 'context_length_exceeded' ? 'context_length_exceeded' : 'invalid_request');
      return c.json(parsed.body, parsed.status);
    }
    if (parsed.request.grammarSpec) {
      const refused = await prepareGrammar(parsed.request, options.grammarChecker);
      if (refused) {
        client.metrics.countRequest('invalid_request');
        return c.json(errorBody('invalid_request', `grammar: ${refused.message}`, 'grammar'), refused.status);
      }
    }
    return parsed.request.stream ? streamGeneration(c, client, parsed.request, heartbeatMs) : collectGeneration(c, client, parsed.request);
  });

  app.notFound((c) => c.json(errorBody('not_found', `No route for ${c.req.method} ${c.req.path}.`), 404));
  app.onError((_error, c) => c.json(errorBody('internal_error', 'Internal error.'), 500));
  return app;
}

/** Checks and compiles the request's grammar (before any header goes out); the refusal names the problem. */
async function prepareGrammar(request: ValidatedGenerateRequest, checker: GrammarChecker | undefined): Promise<{ status: 400 | 413; message: string } | null> {
  if (!checker) return { status: 400, message: 'this backend does not support grammars' };
  const built = grammarSourceOf(request.grammarSpec!);
  if (!built.ok) return { status: 400, message: built.message };
  if (built.source.schema.length > MAX_GRAMMAR_TEXT) return { status: 413, message: `the schema is ${built.source.schema.length} characters, over the limit of ${MAX_GRAMMAR_TEXT}` };
  const outcome = await checker.check(built.source);
  if (!outcome.ok) return outcome;
  request.grammar = built.source;
  return null;
}

function refusal(c: Context, client: GenerationClient, outcome: Extract<ReturnType<GenerationClient['submit']>, { ok: false }>): Response {
  client.metrics.countRequest(outcome.code === 'backend_unavailable' ? 'not_ready' : outcome.code);
  return refuse(c, 503, outcome.code, outcome.message);
}

/** SSE: headers go out at once; events follow as steps produce them; errors after that are in-band. */
function streamGeneration(c: Context, client: GenerationClient, request: ValidatedGenerateRequest, heartbeatMs: number): Response {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  let heartbeat: NodeJS.Timeout | undefined;
  const close = () => {
    if (!open) return;
    open = false;
    clearInterval(heartbeat);
    controller.close();
  };
  const body = new ReadableStream<Uint8Array>({
    start(streamController) {
      controller = streamController;
    },
    cancel: () => abort(),
  });
  const outcome = client.submit(request, (event: GenerateEvent) => {
    if (!open) return;
    controller.enqueue(encoder.encode(encodeSse(JSON.stringify(event.data), event.event)));
    if (event.event === 'end' || event.event === 'error') close();
  });
  if (!outcome.ok) return refusal(c, client, outcome);
  const abort = () => {
    if (!open) return;
    open = false;
    clearInterval(heartbeat);
    outcome.cancel();
  };
  // A client that left before this point gets no abort event: check first.
  if (c.req.raw.signal.aborted) abort();
  else c.req.raw.signal.addEventListener('abort', abort, { once: true });
  heartbeat = setInterval(() => open && controller.enqueue(encoder.encode(encodeSseComment('ping'))), heartbeatMs);
  heartbeat.unref();
  return new Response(body, {
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      [PROTOCOL_VERSION_HEADER]: String(PROTOCOL_VERSION),
    },
  });
}

/** stream: false: one GenerateResponse when the request ends. */
async function collectGeneration(c: Context, client: GenerationClient, request: ValidatedGenerateRequest): Promise<Response> {
  const choices: GenerateResponse['choices'] = Array.from({ length: request.sampling.n }, (_, choice) => ({ choice, tokenIds: [], finishReason: 'abort' }));
  let settle!: (event: GenerateEvent) => void;
  const ended = new Promise<GenerateEvent>((resolve) => (settle = resolve));
  const outcome = client.submit(request, (event) => {
    if (event.event === 'token') {
      const target = choices[event.data.choice];
      target.tokenIds.push(...event.data.tokenIds);
      if (event.data.logprobs) (target.logprobs ??= []).push(...event.data.logprobs);
    } else if (event.event === 'finish') {
      choices[event.data.choice].finishReason = event.data.finishReason;
    } else {
      settle(event);
    }
  });
  if (!outcome.ok) return refusal(c, client, outcome);
  if (c.req.raw.signal.aborted) outcome.cancel();
  else c.req.raw.signal.addEventListener('abort', outcome.cancel, { once: true });
  const last = await ended;
  if (last.event === 'error') return c.json({ error: last.data }, last.data.code === 'shutting_down' ? 503 : 500);
  if (last.event !== 'end') throw new Error(`unexpected final event ${last.event}`);
  const response: GenerateResponse = { requestId: request.requestId, choices, usage: last.data.usage };
  return c.json(response);
}
