// Streaming generation: 200 + SSE headers as soon as a backend answers (a backend that is down is still a
// 503), the API's opening chunks at once, `: ping` while the backend prefills, text chunks as tokens decode,
// the usage chunk, `data: [DONE]`. The response stream owns the upstream fetch: its cancel (client gone)
// stops the backend request (aborts it before the backend's first byte), and every end path settles the
// rate-limit lease; a client that left is billed the backend's count of what it generated (settleClientGone).

import { errorBody, type Usage } from '../../../shared/protocol';
import { SSE_HEADERS, encodeSse, encodeSseComment } from '../../../shared/sse';
import { backendPool, type BackendLease } from '../backend/backend-pool';
import { HttpError, errorResponse } from '../../../shared/http-error';
import { edgeMetrics, type StreamEnd } from '../observability/edge-metrics';
import type { OutputEvent } from './generation-events';
import { peerOf, planEvents, settleClientGone, settledUsage, type GenerationPlan, type StreamFormat } from './generation-plan';

const encoder = new TextEncoder();
const LOST = 'The connection to the model backend was lost.';

const timerTurn = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** How often a stream whose client reads slower than the backend writes looks whether its queue was taken. */
const DRAIN_POLL_MS = 2;
const DRAIN_WAIT_MS = 250;

/** Resolves with the settled `promise` (its value or its error), or 'waiting' after `ms`. */
async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'waiting' | unknown> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const waiting = new Promise<'waiting'>((resolve) => (timer = setTimeout(() => resolve('waiting'), ms)));
  try {
    return await Promise.race([promise.catch((error: unknown) => error), waiting]);
  } finally {
    clearTimeout(timer);
  }
}

export async function streamGeneration(plan: GenerationPlan, format: StreamFormat): Promise<Response> {
  const upstream = new AbortController();
  const opening = backendPool(plan.config).open(peerOf(plan), plan.request, upstream.signal);
  // Wait briefly for backend headers, so "no backend" is a real 503; past that, commit the 200 and let the
  // stream own the pending fetch.
  const early = await settleWithin(opening, plan.config.backendConnectWaitMs);
  if (early instanceof HttpError) {
    plan.waitUntil(plan.admission.release(null));
    const response = errorResponse(early);
    for (const [name, value] of Object.entries(plan.admission.headers)) response.headers.set(name, value);
    return response;
  }
  const session = new StreamSession(plan, format, upstream, opening);
  // Holds the request's context open until the session has ended. Without it workerd may drop the context
  // when the client disconnects, and the cancel below (with the lease release in it) never runs.
  plan.waitUntil(session.ended);
  // Deployed, request.signal (enable_request_signal) reports a closed connection even when no cancel reaches the
  // body stream; locally workerd sometimes reports neither (docs/bench/edge-dev-runtime.md).
  const onClientAbort = () => session.finish('client_closed');
  plan.clientSignal?.addEventListener('abort', onClientAbort, { once: true });
  void session.ended.then(() => plan.clientSignal?.removeEventListener('abort', onClientAbort));
  const body = new ReadableStream<Uint8Array>({
    // start returns at once: a stream whose start promise is still pending counts as not started, and the
    // runtime may hold a cancel back until it is; the session runs on under the request's waitUntil.
    start: (controller) => {
      plan.waitUntil(session.run(controller));
    },
    cancel: () => session.finish('client_closed'),
  });
  return new Response(body, {
    status: 200,
    headers: { ...SSE_HEADERS, ...plan.admission.headers },
  });
}

/** One streamed response: its lease, heartbeat and end-of-request bookkeeping. */
class StreamSession {
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private lease: BackendLease | null = null;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private usage: Usage | null = null;
  private readonly received = { tokenCount: 0 };
  private failed = false;
  private closed = false;
  /** Set once the runtime left a queued chunk untaken for DRAIN_WAIT_MS (see paced). */
  private unpaced = false;
  private markEnded!: () => void;
  /** Settles once finish() has run: the lease is released (or its release is under way). */
  readonly ended = new Promise<void>((resolve) => (this.markEnded = resolve));

  constructor(
    private readonly plan: GenerationPlan,
    private readonly format: StreamFormat,
    private readonly upstream: AbortController,
    private readonly opening: Promise<BackendLease>,
  ) {}

  async run(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    this.controller = controller;
    try {
      for (let choice = 0; choice < this.plan.choiceCount; choice++) {
        const chunk = this.format.opening(choice);
        if (chunk) this.sendJson(chunk);
      }
      const { heartbeatMs } = this.plan.config;
      if (heartbeatMs > 0) this.heartbeat = setInterval(() => this.send(encodeSseComment('ping')), heartbeatMs);
      try {
        await this.relay();
      } catch (error) {
        if (!this.closed) {
          console.error('edge: generation stream failed', error);
          this.failed = !(error instanceof HttpError) || error.code === 'backend_unavailable';
          this.sendJson(error instanceof HttpError ? errorBody(error.code, error.message, error.param) : errorBody('backend_unavailable', LOST));
        }
      }
      this.send('data: [DONE]\n\n');
      if (!this.closed) controller.close();
    } finally {
      // Whatever happened above (a write to a stream the runtime already tore down throws), the request ends here.
      this.finish(this.failed ? 'backend_error' : 'completed');
    }
  }

  /** Idempotent end of the request: from the normal end, an error, or the client's cancel. */
  finish(how: StreamEnd): void {
    if (this.closed) return;
    this.closed = true;
    edgeMetrics.countStreamEnd(how);
    if (how === 'backend_error') edgeMetrics.countError('backend_unavailable');
    this.stopHeartbeat();
    // Before the abort: a lease that is stopping holds it back until the backend has answered with its count.
    if (how === 'client_closed' && !this.usage) settleClientGone(this.plan, this.lease ?? this.opening, this.received);
    else this.plan.waitUntil(this.plan.admission.release(settledUsage(this.plan, this.usage, this.received)));
    this.upstream.abort();
    this.lease?.done(this.failed);
    this.markEnded();
  }

  private async relay(): Promise<void> {
    const lease = await this.opening;
    if (this.closed) {
      // The client left while the backend was answering: finish() ran before the lease existed, and its stop
      // (settleClientGone) closes the body once the backend has answered.
      lease.done();
      return;
    }
    this.lease = lease;
    for await (const event of planEvents(this.plan, lease, this.received)) {
      this.stopHeartbeat();
      if (this.closed) return;
      this.write(event);
      if (event.type === 'error') return;
      // Not after usage, the last event: the backend's body is let go at once then (a stopping lease needs that).
      if (event.type !== 'usage') await this.paced();
    }
    const chunk = this.usage ? this.format.usage(this.usage) : null;
    if (chunk) this.sendJson(chunk);
  }

  /**
   * workerd delivers a client's disconnect (the body's cancel, request.signal) to a relay fed by the backend's
   * body alone late or never, the more so once chunks queue in the response stream: so wait on a timer after
   * each event, and until the runtime has taken what is queued (docs/bench/edge-dev-runtime.md).
   */
  private async paced(): Promise<void> {
    await timerTurn(0);
    if (this.unpaced) return;
    // A client gone while its chunks were queued is sometimes never reported and never read from again: past
    // DRAIN_WAIT_MS the stream relays unpaced, so it still runs to its end and releases its lease.
    const giveUpAt = Date.now() + DRAIN_WAIT_MS;
    while (!this.closed && (this.controller.desiredSize ?? 1) <= 0) {
      if (Date.now() >= giveUpAt) {
        this.unpaced = true;
        return;
      }
      await timerTurn(DRAIN_POLL_MS);
    }
  }

  private write(event: OutputEvent): void {
    if (event.type === 'delta') this.sendJson(this.format.delta(event.choice, event.text, event.logprobs));
    else if (event.type === 'finish') this.sendJson(this.format.finish(event.choice, event.finishReason));
    else if (event.type === 'tool_call') this.sendJson(this.format.toolCall!(event.choice, event.delta));
    else if (event.type === 'usage') this.usage = event.usage;
    else {
      this.failed = true;
      this.sendJson(errorBody('backend_unavailable', event.message));
    }
  }

  private send(text: string): void {
    if (this.closed) return;
    try {
      this.controller.enqueue(encoder.encode(text));
    } catch {
      // The response stream is gone without a cancel reaching us: the client has left.
      this.finish('client_closed');
    }
  }

  private sendJson(value: object): void {
    this.send(encodeSse(JSON.stringify(value)));
  }

  private stopHeartbeat(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }
}
