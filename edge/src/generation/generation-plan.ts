// What a route hands to the generation runners (streaming and not): the backend request, the text rules
// (stop strings, choices), the rate-limit admission to settle, and the wire format of its API.

import type { GenerateRequest, SampledLogprob, Usage } from '../../../shared/protocol';
import { readBackendEvents } from '../backend/backend-events';
import type { BackendLease } from '../backend/backend-pool';
import type { PeerExpectation } from '../backend/peer-check';
import type { EdgeConfig } from '../config';
import type { Admission } from '../rate-limit/rate-limit-gate';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { ToolCallDelta } from '../tools/tool-call-stream';
import { generationEvents, type OutputEvent, type OutputFinishReason } from './generation-events';

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
  /** The [TOOL_CALLS] control id when output calls become tool_calls (chat with tools). */
  toolCallTokenId?: number;
}

/** Turns text events into the wire objects of one API (chat or legacy completions). */
export interface StreamFormat {
  /** Chunks sent as soon as the response starts (the chat role chunk), one per choice. */
  opening(choice: number): object | null;
  delta(choice: number, text: string, logprobs: SampledLogprob[]): object;
  finish(choice: number, finishReason: OutputFinishReason): object;
  usage(usage: Usage): object | null;
  /** One streamed tool-call delta (chat only; APIs without tools never see one). */
  toolCall?(choice: number, delta: ToolCallDelta): object;
}

/** A tool call assembled from its deltas. */
export interface ToolCallResult {
  id: string;
  name: string;
  arguments: string;
}

export interface ChoiceResult {
  text: string;
  finishReason: OutputFinishReason | null;
  logprobs: SampledLogprob[];
  toolCalls: ToolCallResult[];
}

/** Adds one streamed delta to the calls, the way OpenAI's clients assemble them (by index). */
export function addToolCallDelta(calls: ToolCallResult[], delta: ToolCallDelta): void {
  const call = (calls[delta.index] ??= { id: '', name: '', arguments: '' });
  if (delta.id) call.id = delta.id;
  if (delta.function.name) call.name = delta.function.name;
  call.arguments += delta.function.arguments;
}

/** Token ids received so far: what a request cut short is charged for. */
export interface ReceivedCount {
  tokenCount: number;
}

/**
 * What the key is charged and billed: the usage its client receives, or for a request cut short (client
 * gone, backend lost) the prompt + the token ids seen so far, with no cached count (only the backend's end
 * event reports one). A client that left gets this amended by the backend's own count (settleClientGone).
 */
export function settledUsage(plan: GenerationPlan, usage: Usage | null, received: ReceivedCount): Usage {
  return usage ?? { promptTokens: plan.request.tokenIds.length, completionTokens: received.tokenCount, cachedTokens: 0 };
}

/**
 * Ends a request whose client left before its usage came. The backend is stopped, not only disconnected, so its
 * answer carries what it generated for the request, tokens the edge had not read yet included: the count the key is
 * billed (a cancelled stream is counted by what was generated). The key's slot is released at once with what the
 * edge read, amended when that answer comes, so the next request is admitted no later than before. No lease (the
 * backend never answered), a backend that cannot be reached or gives no count (an older one's 204): what the edge
 * read stays billed. A lease at hand is stopped synchronously, so the caller's abort that follows is held back.
 */
export function settleClientGone(plan: GenerationPlan, lease: BackendLease | Promise<BackendLease>, received: ReceivedCount): void {
  let tell!: (usage: Promise<Usage | null>) => void;
  // The release goes out first: the next request of the key waits on it, not on the stop.
  plan.waitUntil(plan.admission.releaseAwaitingCount(settledUsage(plan, null, received), new Promise((resolve) => (tell = resolve))));
  tell(
    lease instanceof Promise
      ? lease.then(
          (opened) => opened.stop('client_closed'),
          () => null,
        )
      : lease.stop('client_closed'),
  );
}

/** What a backend must serve for this plan's tokenizer and limits (backend/peer-check.ts). */
export function peerOf(plan: GenerationPlan): PeerExpectation {
  const { vocabSize, bosTokenId, eosTokenId } = plan.tokenizer;
  return { vocabSize, bosTokenId, eosTokenId, maxModelLen: plan.config.maxModelLen };
}

/**
 * The backend's body as text events. A stop-string hit on every choice ends the backend request through the
 * lease's stop (counted a stop there, not an abort), under waitUntil so the client's answer does not wait for it.
 */
export function planEvents(plan: GenerationPlan, lease: BackendLease, received: ReceivedCount): AsyncGenerator<OutputEvent> {
  return generationEvents(
    readBackendEvents(lease.response.body!, plan.config.backendIdleTimeoutMs, () => lease.stopping),
    {
      tokenizer: plan.tokenizer,
      choiceCount: plan.choiceCount,
      stop: plan.stop,
      promptTokenCount: plan.request.tokenIds.length,
      onAllStopped: () => plan.waitUntil(lease.stop()),
      continuesPrompt: plan.continuesPrompt,
      received,
      toolCallTokenId: plan.toolCallTokenId,
    },
  );
}
