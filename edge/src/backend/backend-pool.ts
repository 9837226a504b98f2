// Chooses a backend per request: healthy first (no recent failure), then least in-flight in this isolate.
// Tries the next backend only while nothing has been streamed (connect error or 5xx before any token), and
// never one that fails the peer check (protocol version, model; peer-check.ts).

import { BACKEND_AUTH_HEADER, type GenerateRequest, type StopRequest } from '../../../shared/protocol';
import { HttpError } from '../../../shared/http-error';
import { peerProblem, type PeerExpectation } from './peer-check';
import { edgeMetrics } from '../observability/edge-metrics';

/** A backend that failed is skipped for this long unless every backend is failing. */
export const FAILURE_COOLDOWN_MS = 10_000;

interface BackendState {
  url: string;
  inFlight: number;
  lastFailureAt: number;
}

export interface BackendLease {
  url: string;
  response: Response;
  /** Marks the request done for load accounting; `failed` also starts the cooldown. */
  done(failed?: boolean): void;
  /**
   * The edge ends the request itself (a stop string): POSTs /v1/stop, and only once the backend has answered (or
   * the headers timeout passed) closes the connection, so the backend counts a stop, not a client that left. Until
   * then neither the caller's abort nor the body's reader (see `stopping`) closes it. Never rejects; idempotent.
   */
  stop(): Promise<void>;
  /** True once stop() was called: the body is closed by the lease, not by its reader. */
  readonly stopping: boolean;
}

const states = new Map<string, BackendState>();

function stateOf(url: string): BackendState {
  let state = states.get(url);
  if (!state) {
    state = { url, inFlight: 0, lastFailureAt: -Infinity };
    states.set(url, state);
  }
  return state;
}

/** Order of attempts: healthy backends by load (random tie-break), then failing ones by oldest failure. */
export function backendOrder(urls: string[], now = Date.now()): string[] {
  const all = urls.map(stateOf).map((state) => ({ state, tie: Math.random() }));
  const healthy = all.filter((b) => now - b.state.lastFailureAt >= FAILURE_COOLDOWN_MS);
  const failing = all.filter((b) => now - b.state.lastFailureAt < FAILURE_COOLDOWN_MS);
  healthy.sort((a, b) => a.state.inFlight - b.state.inFlight || a.tie - b.tie);
  failing.sort((a, b) => a.state.lastFailureAt - b.state.lastFailureAt);
  return [...healthy, ...failing].map((b) => b.state.url);
}

export function resetBackendStates(): void {
  states.clear();
}

export function backendHeaders(token: string): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers[BACKEND_AUTH_HEADER] = `Bearer ${token}`;
  return headers;
}

/** Backend status -> public error, never passing the backend's message through. */
function publicErrorFor(status: number): HttpError {
  if (status === 400 || status === 413 || status === 422) return new HttpError(400, 'invalid_request', 'The model backend rejected the request parameters.');
  if (status === 429) return new HttpError(503, 'overloaded', 'The model is overloaded; retry shortly.', null, { 'retry-after': '1' });
  return new HttpError(503, 'backend_unavailable', 'No model backend is available right now; retry shortly.', null, { 'retry-after': '1' });
}

const MAX_GRAMMAR_MESSAGE_CHARS = 1000;

/**
 * A 400/413 about the request's grammar names the caller's own schema or tools, so its message may pass
 * through, with `param` rewritten to the public field the grammar came from. Null for any other refusal.
 */
async function grammarRefusal(response: Response, request: GenerateRequest): Promise<HttpError | null> {
  if ((response.status !== 400 && response.status !== 413) || !request.grammar) return null;
  const body = (await response.json().catch(() => null)) as { error?: { param?: unknown; message?: unknown } } | null;
  if (body?.error?.param !== 'grammar' || typeof body.error.message !== 'string') return null;
  const field = request.grammar.type === 'tool_calls' ? 'tools' : 'response_format';
  return new HttpError(response.status, 'invalid_request', `Invalid value for '${field}': ${body.error.message.slice(0, MAX_GRAMMAR_MESSAGE_CHARS)}`, field);
}

/** POST /v1/stop for `requestId`; any failure is only logged (the abort that follows then counts as one). */
async function postStop(url: string, config: PoolConfig, requestId: string): Promise<void> {
  try {
    const body = JSON.stringify({ requestId } satisfies StopRequest);
    const signal = AbortSignal.timeout(config.backendHeadersTimeoutMs);
    const response = await fetch(`${url}/v1/stop`, { method: 'POST', headers: backendHeaders(config.backendToken), body, signal });
    await response.body?.cancel();
    // 404: the request ended on its own meanwhile; nothing left to stop.
    if (!response.ok && response.status !== 404) console.error(`edge: backend ${url} answered ${response.status} to /v1/stop`);
  } catch (error) {
    console.error(`edge: backend ${url} did not take /v1/stop: ${(error as Error).message}`);
  }
}

/** The lease of a backend that answered 2xx; `attempt` aborts its fetch, which a stop does once it was told. */
function leaseOf(url: string, response: Response, done: BackendLease['done'], attempt: AbortController, tellStop: () => Promise<void>): BackendLease {
  let stopping: Promise<void> | null = null;
  return {
    url,
    response,
    done,
    stop: () =>
      (stopping ??= tellStop().then(async () => {
        attempt.abort();
        // The fetch's abort ends the body in a runtime; a body still unread and unlocked is let go here too.
        if (!response.body?.locked) await response.body?.cancel().catch(() => undefined);
      })),
    get stopping() {
      return stopping !== null;
    },
  };
}

/** What openGeneration needs of the edge config. */
export interface PoolConfig {
  backendUrls: string[];
  backendToken: string;
  /** Per backend: past this without response headers, the attempt is abandoned and the backend marked failed. */
  backendHeadersTimeoutMs: number;
}

/**
 * POSTs to /v1/generate on the best backend, falling through to the next on a connect error, a headers
 * timeout (a stopped or wedged process accepts connections and never answers) or a retryable status.
 * Resolves once a backend has answered 2xx headers.
 */
export async function openGeneration(config: PoolConfig, peer: PeerExpectation, request: GenerateRequest, signal: AbortSignal): Promise<BackendLease> {
  let lastError: HttpError = publicErrorFor(503);
  for (const url of backendOrder(config.backendUrls)) {
    if (signal.aborted) break;
    const state = stateOf(url);
    state.inFlight += 1;
    let finished = false;
    const done = (failed = false) => {
      if (finished) return;
      finished = true;
      state.inFlight -= 1;
      if (failed) state.lastFailureAt = Date.now();
    };
    // The attempt's own signal: the caller's abort, or this backend's headers deadline.
    const attempt = new AbortController();
    let lease: BackendLease | null = null;
    // While a stop is being told, the stop's own end closes the connection.
    const follow = () => {
      if (!lease?.stopping) attempt.abort();
    };
    signal.addEventListener('abort', follow);
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      attempt.abort();
    }, config.backendHeadersTimeoutMs);
    try {
      const problem = await peerProblem(url, config.backendToken, peer, attempt.signal);
      if (problem) {
        clearTimeout(deadline);
        signal.removeEventListener('abort', follow);
        edgeMetrics.countBackendAttempt('mismatched');
        done(true);
        continue;
      }
      const body = JSON.stringify(request);
      const response = await fetch(`${url}/v1/generate`, { method: 'POST', headers: backendHeaders(config.backendToken), body, signal: attempt.signal });
      clearTimeout(deadline);
      edgeMetrics.countBackendAttempt(response.ok ? 'ok' : 'refused');
      if (response.ok && response.body) return (lease = leaseOf(url, response, done, attempt, () => postStop(url, config, request.requestId)));
      signal.removeEventListener('abort', follow);
      const grammarError = await grammarRefusal(response, request);
      await response.body?.cancel().catch(() => undefined);
      const retryable = response.status >= 500 || response.status === 429 || response.status === 401 || response.status === 403;
      done(response.status >= 500 || response.status === 401 || response.status === 403);
      lastError = grammarError ?? publicErrorFor(response.status);
      if (!retryable) throw lastError;
    } catch (error) {
      clearTimeout(deadline);
      signal.removeEventListener('abort', follow);
      if (error instanceof HttpError) throw error;
      if (!signal.aborted) edgeMetrics.countBackendAttempt(timedOut ? 'headers_timeout' : 'connect_error');
      if (timedOut) console.error(`edge: backend ${url} sent no headers within ${config.backendHeadersTimeoutMs} ms; trying the next one`);
      done(timedOut || !signal.aborted);
      lastError = publicErrorFor(503);
    }
  }
  throw lastError;
}
