// The backend's HTTP surface (Hono): token ids in, SSE of token ids out, plus health, readiness,
// model info and Prometheus metrics. Generation itself happens behind GenerationClient. Every refusal is
// thrown as an HttpError and rendered (and counted) in the one `onError` below.

import { timingSafeEqual } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HttpError, badRequest, errorResponse } from '../../../shared/http-error';
import {
  BACKEND_AUTH_HEADER,
  BACKEND_HEARTBEAT_MS,
  PROTOCOL_VERSION,
  PROTOCOL_VERSION_HEADER,
  type ErrorCode,
  type GenerateEvent,
  type GenerateResponse,
  type StopResponse,
} from '../../../shared/protocol';
import { SSE_HEADERS, encodeSse, encodeSseComment } from '../../../shared/sse';
import type { GenerationClient, SubmitOutcome } from './generation-client';
import type { GrammarChecker } from './grammar/grammar-checker';
import type { RequestOutcome } from './metrics';
import { parseStopRequest, RequestSchema, type ValidatedGenerateRequest } from './request-schema';

export interface BackendAppOptions {
  client: GenerationClient;
  /** Shared secret the edge sends as `authorization: Bearer <token>`; unset means no check. */
  backendToken?: string;
  /** SSE comment interval while a stream has nothing to say (long prefill); default BACKEND_HEARTBEAT_MS, which the edge's idle timeout assumes. */
  heartbeatMs?: number;
  /** Compiles grammars before admission (400/413); absent: requests with a grammar get a 400. */
  grammarChecker?: GrammarChecker;
}

/** Token ids as JSON take ~6 bytes each: room for far more than any context length. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** A /v1/stop body is one id of at most 256 characters. */
const MAX_STOP_BODY_BYTES = 4 * 1024;
const OPEN_PATHS = new Set(['/health', '/ready']);

function tokenMatches(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer (.+)$/.exec(header ?? '');
  if (!match) return false;
  const given = Buffer.from(match[1]);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** A 503 the edge may retry on another backend: this one cannot take the request now. */
function unavailable(code: Extract<SubmitOutcome, { ok: false }>['code'], message: string): HttpError {
  return new HttpError(503, code, message, null, { 'retry-after': '1' });
}

function notReady(message: string): HttpError {
  return unavailable('backend_unavailable', message);
}

/** The client's admission, or the 503 it refused with. */
function admitted(outcome: SubmitOutcome): Extract<SubmitOutcome, { ok: true }> {
  if (!outcome.ok) throw unavailable(outcome.code, outcome.message);
  return outcome;
}

/** The requests counter's label for a refusal; null: not counted (unknown routes). */
function outcomeOf(code: ErrorCode): RequestOutcome | null {
  if (code === 'invalid_api_key') return 'unauthorized';
  if (code === 'backend_unavailable') return 'not_ready';
  if (code === 'invalid_request' || code === 'context_length_exceeded' || code === 'overloaded' || code === 'shutting_down') return code;
  return null;
}

export function createBackendApp(options: BackendAppOptions): Hono {
  const { client } = options;
  const heartbeatMs = options.heartbeatMs ?? BACKEND_HEARTBEAT_MS;
  const expectedToken = options.backendToken ? Buffer.from(options.backendToken) : null;
  let schema: RequestSchema | null = null;
  const app = new Hono();

  app.use('*', async function protocolAndAuth(c, next) {
    c.header(PROTOCOL_VERSION_HEADER, String(PROTOCOL_VERSION));
    if (expectedToken && !OPEN_PATHS.has(c.req.path) && !tokenMatches(c.req.header(BACKEND_AUTH_HEADER), expectedToken)) {
      throw new HttpError(401, 'invalid_api_key', 'Missing or wrong backend token.');
    }
    await next();
  });

  app.get('/health', (c) => c.json({ status: 'ok' }));
  app.get('/ready', (c) => {
    if (!client.isReady()) throw notReady('The model is not loaded yet.');
    return c.json({ status: 'ready', ...client.engine });
  });
  app.get('/v1/model', (c) => {
    if (!client.modelInfo) throw notReady('The model is not loaded yet.');
    return c.json(client.modelInfo);
  });
  app.get('/metrics', (c) => c.text(client.metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }));

  const limitBody = (maxSize: number) =>
    bodyLimit({
      maxSize,
      onError: () => {
        throw new HttpError(413, 'invalid_request', `The body exceeds ${maxSize} bytes.`);
      },
    });
  app.post('/v1/generate', limitBody(MAX_BODY_BYTES), async (c) => {
    if (!client.isReady() || !client.modelInfo || !client.limits) throw notReady('The model is not loaded yet.');
    schema ??= new RequestSchema({ vocabSize: client.modelInfo.vocabSize, maxModelLen: client.modelInfo.maxModelLen, maxChoices: client.limits.maxRunning });
    const body: unknown = await c.req.json().catch(() => {
      throw badRequest('The body must be JSON.');
    });
    const request = schema.parse(body);
    if (request.grammarSpec) await prepareGrammar(request, options.grammarChecker);
    return request.stream ? streamGeneration(c, client, request, heartbeatMs) : collectGeneration(c, client, request);
  });

  // The edge ends a request itself (a stop string, or its client left) and says so before it cancels the stream;
  // the answer waits for the request's end, so it carries what was generated (shared/protocol.ts).
  app.post('/v1/stop', limitBody(MAX_STOP_BODY_BYTES), async (c) => {
    const body: unknown = await c.req.json().catch(() => {
      throw badRequest('The body must be JSON.');
    });
    const { requestId, reason } = parseStopRequest(body);
    const usage = await client.stop(requestId, reason ?? 'stop_string');
    if (!usage) throw new HttpError(404, 'not_found', 'No request with this requestId is in flight or recently ended with a usage.', 'requestId');
    return c.json({ usage } satisfies StopResponse);
  });

  const render = (error: HttpError) => {
    const response = errorResponse(error);
    response.headers.set(PROTOCOL_VERSION_HEADER, String(PROTOCOL_VERSION));
    return response;
  };
  app.notFound((c) => render(new HttpError(404, 'not_found', `No route for ${c.req.method} ${c.req.path}.`)));
  app.onError((error, c) => {
    const refusal = error instanceof HttpError ? error : new HttpError(500, 'internal_error', 'Internal error.');
    // Counted: generation requests, and wrong tokens on any path (as /ready polls are not).
    const outcome = outcomeOf(refusal.code);
    if (outcome && (c.req.path === '/v1/generate' || outcome === 'unauthorized')) client.metrics.countRequest(outcome);
    return render(refusal);
  });
  return app;
}

/** Checks and compiles the request's grammar (before any header goes out); a refusal (400/413) names the problem. */
async function prepareGrammar(request: ValidatedGenerateRequest, checker: GrammarChecker | undefined): Promise<void> {
  const refuse = (status: 400 | 413, message: string) => new HttpError(status, 'invalid_request', `grammar: ${message}`, 'grammar');
  if (!checker) throw refuse(400, 'this backend does not support grammars');
  const outcome = await checker.check(request.grammarSpec!);
  if (!outcome.ok) throw refuse(outcome.status, outcome.message);
  request.grammar = outcome.source;
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
  const outcome = admitted(
    client.submit(request, (event: GenerateEvent) => {
      if (!open) return;
      controller.enqueue(encoder.encode(encodeSse(JSON.stringify(event.data), event.event)));
      if (event.event === 'end' || event.event === 'error') close();
    }),
  );
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
    headers: { ...SSE_HEADERS, [PROTOCOL_VERSION_HEADER]: String(PROTOCOL_VERSION) },
  });
}

/** stream: false: one GenerateResponse when the request ends. */
async function collectGeneration(c: Context, client: GenerationClient, request: ValidatedGenerateRequest): Promise<Response> {
  const choices: GenerateResponse['choices'] = Array.from({ length: request.sampling.n }, (_, choice) => ({ choice, tokenIds: [], finishReason: 'abort' }));
  let settle!: (event: GenerateEvent) => void;
  const ended = new Promise<GenerateEvent>((resolve) => (settle = resolve));
  const outcome = admitted(
    client.submit(request, (event) => {
      if (event.event === 'token') {
        const target = choices[event.data.choice];
        target.tokenIds.push(...event.data.tokenIds);
        if (event.data.logprobs) (target.logprobs ??= []).push(...event.data.logprobs);
      } else if (event.event === 'finish') {
        choices[event.data.choice].finishReason = event.data.finishReason;
      } else {
        settle(event);
      }
    }),
  );
  if (c.req.raw.signal.aborted) outcome.cancel();
  else c.req.raw.signal.addEventListener('abort', outcome.cancel, { once: true });
  const last = await ended;
  // Already counted by the client as the request's end, so not thrown to onError (which would count it again).
  if (last.event === 'error') return c.json({ error: last.data }, last.data.code === 'shutting_down' ? 503 : 500);
  if (last.event !== 'end') throw new Error(`unexpected final event ${last.event}`);
  const response: GenerateResponse = { requestId: request.requestId, choices, usage: last.data.usage };
  return c.json(response);
}
