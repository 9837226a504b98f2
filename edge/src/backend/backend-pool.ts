// Chooses a backend per request: healthy first (no recent failure), then least in-flight in this worker.
// Tries the next backend only while nothing has been streamed (connect error or 5xx before any token), and
// never one that fails the peer check (protocol version, model; peer-check.ts). What each kind of failed
// attempt leads to is one table, ATTEMPT_RULES (attempt-rules.ts).

import { BACKEND_AUTH_HEADER, type GenerateRequest, type StopReason, type StopRequest, type Usage } from '../../../shared/protocol';
import { HttpError } from '../../../shared/http-error';
import { PeerChecks, type PeerExpectation } from './peer-check';
import { edgeMetrics } from '../observability/edge-metrics';
import { ATTEMPT_RULES, type AttemptOutcome, outcomeOfStatus, unavailable } from './attempt-rules';

/** A backend that failed is skipped for this long unless every backend is failing. */
export const FAILURE_COOLDOWN_MS = 10_000;

/** One backend's load in this pool; `take` counts a request on it and returns its once-only release. */
class BackendState {
  inFlight = 0;
  lastFailureAt = -Infinity;

  constructor(readonly url: string) {}

  take(): BackendLease['done'] {
    this.inFlight += 1;
    let released = false;
    return (failed = false) => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
      if (failed) this.lastFailureAt = Date.now();
    };
  }
}

export interface BackendLease {
  url: string;
  response: Response;
  /** Marks the request done for load accounting; `failed` also starts the cooldown. */
  done(failed?: boolean): void;
  /**
   * The edge ends the request itself (a stop string, or its client left): POSTs /v1/stop, and only once the backend
   * has answered (or the headers timeout passed) closes the connection, so the backend counts a stop (or an abort for
   * "client_closed"), and its answer can carry the request's usage. Until then neither the caller's abort nor the
   * body's reader (see `stopping`) closes it. Resolves with the backend's usage of the request (what it generated),
   * null when it gave none. Never rejects; idempotent (the first call's reason holds).
   */
  stop(reason?: StopReason): Promise<Usage | null>;
  /** True once stop() was called: the body is closed by the lease, not by its reader. */
  readonly stopping: boolean;
}

export function backendHeaders(token: string): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers[BACKEND_AUTH_HEADER] = `Bearer ${token}`;
  return headers;
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

/**
 * One attempt's connection: aborted by the caller (except while the lease tells a stop, which then closes it
 * itself), by the headers deadline until headers arrive, or by the lease. The deadline is a timer, not
 * AbortSignal.timeout: it must end when the headers arrive, and the body may stream far longer.
 */
class AttemptSignal {
  private readonly controller = new AbortController();
  private readonly deadline: ReturnType<typeof setTimeout>;
  timedOut = false;
  /** Set by the lease: while true, the caller's abort does not close the connection. */
  holdForStop = () => false;

  constructor(
    private readonly caller: AbortSignal,
    headersTimeoutMs: number,
  ) {
    caller.addEventListener('abort', this.follow);
    this.deadline = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, headersTimeoutMs);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private readonly follow = () => {
    if (!this.holdForStop()) this.controller.abort();
  };

  headersArrived(): void {
    clearTimeout(this.deadline);
  }

  abort(): void {
    this.controller.abort();
  }

  /** The attempt failed: nothing of it outlives this call. */
  release(): void {
    clearTimeout(this.deadline);
    this.caller.removeEventListener('abort', this.follow);
  }
}

/** The usage of a StopResponse body, or null for anything else (an older backend's empty 204 included). */
function usageOf(body: unknown): Usage | null {
  const usage = (body as { usage?: Record<string, unknown> } | null)?.usage;
  const count = (value: unknown) => typeof value === 'number' && Number.isInteger(value) && value >= 0;
  if (!usage || !count(usage.promptTokens) || !count(usage.completionTokens) || !count(usage.cachedTokens)) return null;
  return { promptTokens: usage.promptTokens as number, completionTokens: usage.completionTokens as number, cachedTokens: usage.cachedTokens as number };
}

/**
 * POST /v1/stop for `requestId`, resolving with the usage the backend answers; any failure is only logged and
 * resolves null (the abort that follows then counts as one).
 */
async function postStop(url: string, config: PoolConfig, requestId: string, reason: StopReason): Promise<Usage | null> {
  try {
    const body = JSON.stringify({ requestId, reason } satisfies StopRequest);
    const signal = AbortSignal.timeout(config.backendHeadersTimeoutMs);
    const response = await fetch(`${url}/v1/stop`, { method: 'POST', headers: backendHeaders(config.backendToken), body, signal });
    if (response.ok) return usageOf(await response.json().catch(() => null));
    await response.body?.cancel();
    // 404: the backend knows no usage of that request (it ended long ago, or failed); nothing left to stop.
    if (response.status !== 404) console.error(`edge: backend ${url} answered ${response.status} to /v1/stop`);
  } catch (error) {
    console.error(`edge: backend ${url} did not take /v1/stop: ${(error as Error).message}`);
  }
  return null;
}

/** The lease of a backend that answered 2xx; a stop aborts the attempt once the backend was told. */
function leaseOf(
  url: string,
  response: Response,
  done: BackendLease['done'],
  attempt: AttemptSignal,
  tellStop: (reason: StopReason) => Promise<Usage | null>,
): BackendLease {
  let stopping: Promise<Usage | null> | null = null;
  attempt.holdForStop = () => stopping !== null;
  return {
    url,
    response,
    done,
    stop: (reason = 'stop_string') =>
      (stopping ??= tellStop(reason).then(async (usage) => {
        attempt.abort();
        // The fetch's abort ends the body in a runtime; a body still unread and unlocked is let go here too.
        if (!response.body?.locked) await response.body?.cancel().catch(() => undefined);
        return usage;
      })),
    get stopping() {
      return stopping !== null;
    },
  };
}

/** What the pool needs of the edge config. */
export interface PoolConfig {
  backendUrls: string[];
  backendToken: string;
  /** Per backend: past this without response headers, the attempt is abandoned and the backend marked failed. */
  backendHeadersTimeoutMs: number;
}

type AttemptResult = { lease: BackendLease } | { outcome: AttemptOutcome; error: HttpError };

/** The backends of one worker (one resolved config): their load, cooldowns and peer verdicts. */
export class BackendPool {
  private readonly backends: Map<string, BackendState>;
  private readonly peers: PeerChecks;

  constructor(private readonly config: PoolConfig) {
    this.backends = new Map(config.backendUrls.map((url) => [url, new BackendState(url)]));
    this.peers = new PeerChecks(config.backendToken);
  }

  /** Order of attempts: healthy backends by load (random tie-break), then failing ones by oldest failure. */
  order(now = Date.now()): string[] {
    const all = [...this.backends.values()].map((state) => ({ state, tie: Math.random() }));
    const healthy = all.filter((b) => now - b.state.lastFailureAt >= FAILURE_COOLDOWN_MS);
    const failing = all.filter((b) => now - b.state.lastFailureAt < FAILURE_COOLDOWN_MS);
    healthy.sort((a, b) => a.state.inFlight - b.state.inFlight || a.tie - b.tie);
    failing.sort((a, b) => a.state.lastFailureAt - b.state.lastFailureAt);
    return [...healthy, ...failing].map((b) => b.state.url);
  }

  /**
   * POSTs to /v1/generate on the best backend, going on to the next as ATTEMPT_RULES say. Resolves once a
   * backend has answered 2xx headers with a body.
   */
  async open(peer: PeerExpectation, request: GenerateRequest, signal: AbortSignal): Promise<BackendLease> {
    let lastError = unavailable();
    for (const url of this.order()) {
      if (signal.aborted) break;
      const result = await this.attempt(url, peer, request, signal);
      if ('lease' in result) return result.lease;
      lastError = result.error;
      if (!ATTEMPT_RULES[result.outcome].retry) break;
    }
    throw lastError;
  }

  private async attempt(url: string, peer: PeerExpectation, request: GenerateRequest, caller: AbortSignal): Promise<AttemptResult> {
    const done = (this.backends.get(url) as BackendState).take();
    const attempt = new AttemptSignal(caller, this.config.backendHeadersTimeoutMs);
    let outcome: AttemptOutcome;
    let grammarError: HttpError | null = null;
    try {
      if (await this.peers.problem(url, peer, attempt.signal)) {
        outcome = 'mismatched';
      } else {
        const body = JSON.stringify(request);
        const response = await fetch(`${url}/v1/generate`, { method: 'POST', headers: backendHeaders(this.config.backendToken), body, signal: attempt.signal });
        attempt.headersArrived();
        if (response.ok && response.body) {
          edgeMetrics.countBackendAttempt('ok');
          return { lease: leaseOf(url, response, done, attempt, (reason) => postStop(url, this.config, request.requestId, reason)) };
        }
        outcome = outcomeOfStatus(response.status);
        grammarError = await grammarRefusal(response, request);
        await response.body?.cancel().catch(() => undefined);
      }
    } catch {
      outcome = attempt.timedOut ? 'headers_timeout' : caller.aborted ? 'caller_gone' : 'connect_error';
    }
    attempt.release();
    const rule = ATTEMPT_RULES[outcome];
    if (rule.metric) edgeMetrics.countBackendAttempt(rule.metric);
    if (outcome === 'headers_timeout')
      console.error(`edge: backend ${url} sent no headers within ${this.config.backendHeadersTimeoutMs} ms; trying the next one`);
    done(rule.markFailed);
    return { outcome, error: grammarError ?? rule.error() };
  }
}

const pools = new WeakMap<PoolConfig, BackendPool>();

/** The pool of this resolved config: one per worker, since the runtime passes the same env (so config) to every request. */
export function backendPool(config: PoolConfig): BackendPool {
  let pool = pools.get(config);
  if (!pool) {
    pool = new BackendPool(config);
    pools.set(config, pool);
  }
  return pool;
}
