// Runs one generation against the backends and answers the client: SSE (OpenAI chunks, heartbeats,
// cancel-on-disconnect) or one aggregated JSON body. The rate-limit lease and the backend's load slot are
// released on every end path: normal end, stop-string hit, client disconnect, backend failure.

import type { GenerateRequest, SampledLogprob, Usage } from '../../../shared/protocol';
import { encodeSse, encodeSseComment } from '../../../shared/sse';
import { readBackendEvents } from '../backend/backend-events';
import { openGeneration, type BackendLease } from '../backend/backend-pool';
import type { EdgeConfig } from '../config';
import { HttpError, errorResponse } from '../http-error';
import type { Admission } from '../rate-limit/rate-limit-gate';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { generationEvents, type OutputEvent } from './generation-events';
import { errorBody } from '../../../shared/protocol';

export interface GenerationPlan {
  config: EdgeConfig;
  request: GenerateRequest;
  tokenizer: Tokenizer;
  choiceCount: number;
  stop: string[];
  admission: Admission;
  waitUntil(promise: Promise<unknown>): void;
  /** Legacy completions: the output continues the prompt text (keeps a leading space). */
  continuesPrompt?: boolean;
  /** Aborts when the client goes away (non-streaming requests). */
  clientSignal?: AbortSignal;
}

/** Turns text events into the wire objects of one API (chat or legacy completions). */
export interface StreamFormat {
  /** Chunks sent as soon as the response starts (the chat role chunk), one per choice. */
  opening(choice: number): object | null;
  delta(choice: number, text: string, logprobs: SampledLogprob[]): object;
  finish(choice: number, finishReason: 'stop' | 'length'): object;
  usage(usage: Usage): object | null;
}

export interface ChoiceResult {
  text: string;
  finishReason: 'stop' | 'length' | null;
  logprobs: SampledLogprob[];
}

const encoder = new TextEncoder();

/** What the rate limiter charges: the backend's usage, or (request cut short) the prompt + the tokens seen so far. */
function usedTokens(plan: GenerationPlan, usage: Usage | null, received: { tokenCount: number }): number {
  return usage ? usage.promptTokens + usage.completionTokens : plan.request.tokenIds.length + received.tokenCount;
}

function withHeaders(response: Response, headers: Record<string, string>): Response {
  for (const [name, value] of Object.entries(headers)) response.headers.set(name, value);
  return response;
}

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
  const opening = openGeneration(plan.config.backendUrls, plan.config.backendToken, plan.request, upstream.signal);
  // Wait briefly for backend headers, so "no backend" is a real 503; past that, commit the 200 and let the
  // stream own the pending fetch (its cancel aborts it even before the backend's first byte).
  const early = await settleWithin(opening, plan.config.backendConnectWaitMs);
  if (early instanceof HttpError) {
    plan.waitUntil(plan.admission.release(0));
    return withHeaders(errorResponse(early), plan.admission.headers);
  }
  let lease: BackendLease | null = null;
  let heartbeat: ReturnType<typeof setInterval> | null = null;
  const stopHeartbeat = () => {
    if (heartbeat !== null) clearInterval(heartbeat);
    heartbeat = null;
  };
  let usage: Usage | null = null;
  const received = { tokenCount: 0 };
  let failed = false;
  let closed = false;
  const finishUp = () => {
    if (closed) return;
    closed = true;
    stopHeartbeat();
    upstream.abort();
    lease?.done(failed);
    plan.waitUntil(plan.admission.release(usedTokens(plan, usage, received)));
  };

  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (text: string) => {
        if (!closed) controller.enqueue(encoder.encode(text));
      };
      const sendJson = (value: object) => send(encodeSse(JSON.stringify(value)));
      for (let choice = 0; choice < plan.choiceCount; choice++) {
        const chunk = format.opening(choice);
        if (chunk) sendJson(chunk);
      }
      if (plan.config.heartbeatMs > 0) heartbeat = setInterval(() => send(encodeSseComment('ping')), plan.config.heartbeatMs);
      try {
        lease = await opening;
        if (closed) {
          // The client left while the backend was answering: finishUp ran before the lease existed.
          lease.done();
          await lease.response.body?.cancel();
          return;
        }
        const events = generationEvents(readBackendEvents(lease.response.body!), {
          tokenizer: plan.tokenizer,
          choiceCount: plan.choiceCount,
          stop: plan.stop,
          promptTokenCount: plan.request.tokenIds.length,
          onAllStopped: () => upstream.abort(),
          continuesPrompt: plan.continuesPrompt,
          received,
        });
        for await (const event of events) {
          stopHeartbeat();
          if (closed) break;
          writeEvent(event, format, sendJson, (value) => (usage = value), () => (failed = true));
          if (event.type === 'error') break;
        }
        if (usage) {
          const chunk = format.usage(usage);
          if (chunk) sendJson(chunk);
        }
      } catch (error) {
        if (!closed) {
          console.error('edge: generation stream failed', error);
          failed = !(error instanceof HttpError) || error.code === 'backend_unavailable';
          const message = error instanceof HttpError ? error.message : 'The connection to the model backend was lost.';
          sendJson(errorBody(error instanceof HttpError ? error.code : 'backend_unavailable', message));
        }
      }
      send('data: [DONE]\n\n');
      if (!closed) controller.close();
      finishUp();
    },
    cancel() {
      finishUp();
    },
  });
  return new Response(body, {
    status: 200,
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      ...plan.admission.headers,
    },
  });
}

function writeEvent(
  event: OutputEvent,
  format: StreamFormat,
  sendJson: (value: object) => void,
  setUsage: (usage: Usage) => void,
  markFailed: () => void,
): void {
  if (event.type === 'delta') sendJson(format.delta(event.choice, event.text, event.logprobs));
  else if (event.type === 'finish') sendJson(format.finish(event.choice, event.finishReason));
  else if (event.type === 'usage') setUsage(event.usage);
  else {
    markFailed();
    sendJson(errorBody('backend_unavailable', event.message));
  }
}

/** Non-streaming: the same event pipeline, aggregated into per-choice results. */
export async function completeGeneration(plan: GenerationPlan): Promise<{ choices: ChoiceResult[]; usage: Usage }> {
  const upstream = new AbortController();
  const onClientAbort = () => upstream.abort();
  plan.clientSignal?.addEventListener('abort', onClientAbort);
  let lease: BackendLease | null = null;
  let usage: Usage | null = null;
  const received = { tokenCount: 0 };
  let failed = false;
  try {
    lease = await openGeneration(plan.config.backendUrls, plan.config.backendToken, plan.request, upstream.signal);
    const choices: ChoiceResult[] = Array.from({ length: plan.choiceCount }, () => ({ text: '', finishReason: null, logprobs: [] }));
    const events = generationEvents(readBackendEvents(lease.response.body!), {
      tokenizer: plan.tokenizer,
      choiceCount: plan.choiceCount,
      stop: plan.stop,
      promptTokenCount: plan.request.tokenIds.length,
      onAllStopped: () => upstream.abort(),
      continuesPrompt: plan.continuesPrompt,
      received,
    });
    for await (const event of events) {
      if (event.type === 'delta') {
        choices[event.choice].text += event.text;
        choices[event.choice].logprobs.push(...event.logprobs);
      } else if (event.type === 'finish') choices[event.choice].finishReason = event.finishReason;
      else if (event.type === 'usage') usage = event.usage;
      else {
        failed = true;
        throw new HttpError(503, 'backend_unavailable', event.message);
      }
    }
    if (!usage) throw new HttpError(503, 'backend_unavailable', 'The connection to the model backend was lost.');
    return { choices, usage };
  } catch (error) {
    if (error instanceof HttpError) throw new HttpError(error.status, error.code, error.message, error.param, { ...error.headers, ...plan.admission.headers });
    failed = true;
    throw new HttpError(503, 'backend_unavailable', 'The connection to the model backend was lost.', null, plan.admission.headers);
  } finally {
    plan.clientSignal?.removeEventListener('abort', onClientAbort);
    upstream.abort();
    lease?.done(failed);
    plan.waitUntil(plan.admission.release(usedTokens(plan, usage, received)));
  }
}
