// The generation pipeline both OpenAI routes share once they hold prompt ids: check the context and resolve
// max_tokens, admit against the key's limits, plan the backend request, then stream or collect. The routes
// keep what differs: validation, the prompt, and their API's wire format (a GenerationApi).

import type { GenerateRequest, GrammarSpec, Usage } from '../../../shared/protocol';
import type { PublicSamplingFields } from '../../../shared/sampling-fields';
import { waitUntilOf, type AppContext } from '../app-env';
import { admitRequest } from '../rate-limit/rate-limit-gate';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { completeGeneration } from './complete-generation';
import { newRequestId, resolveMaxTokens, stopList, tokensToReserve, toSampling } from './generation-setup';
import type { ChoiceResult, GenerationPlan, StreamFormat } from './generation-plan';
import { streamGeneration } from './stream-generation';

/** One OpenAI API's side of the pipeline. */
export interface GenerationApi {
  idPrefix: string;
  /** The body field that holds the prompt, named in context-length errors. */
  promptParam: 'messages' | 'prompt';
  /** Legacy completions: the output continues the prompt text. */
  continuesPrompt?: boolean;
  streamFormat(ids: ResponseIds, includeUsage: boolean): StreamFormat;
  /** The non-streaming body. */
  response(ids: ResponseIds, result: { choices: ChoiceResult[]; usage: Usage }): object;
}

/** What every object of one response repeats. */
export interface ResponseIds {
  id: string;
  model: string;
  created: number;
}

/** The body fields the pipeline reads (both APIs have them). */
export type GenerationBody = PublicSamplingFields & {
  n?: number;
  stop?: string | string[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
};

export interface GenerationInput {
  body: GenerationBody;
  /** The model name echoed back. */
  model: string;
  tokenizer: Tokenizer;
  tokenIds: number[];
  /** max_tokens as the client sent it (or the API's own default); undefined: to the end of the context. */
  requestedMaxTokens: number | undefined;
  logprobs: number | undefined;
  /** Shared head of tokenIds (BOS + template + system prompt) for the backend's prefix cache. */
  prefixLength?: number | null;
  grammar?: GrammarSpec;
  /** The [TOOL_CALLS] control id when output calls become tool_calls. */
  toolCallTokenId?: number;
}

export async function runGeneration(c: AppContext, api: GenerationApi, input: GenerationInput): Promise<Response> {
  const config = c.get('config');
  const { body, tokenIds } = input;
  const choiceCount = body.n ?? 1;
  const maxTokens = resolveMaxTokens(input.requestedMaxTokens, tokenIds.length, config, api.promptParam);
  const apiKey = c.get('apiKey');
  const reserve = tokensToReserve(tokenIds.length, input.requestedMaxTokens, maxTokens, choiceCount, apiKey.limits.tpm);
  const admission = await admitRequest(c.env.RATE_LIMITER, apiKey, reserve);
  const ids: ResponseIds = { id: newRequestId(api.idPrefix), model: input.model, created: Math.floor(Date.now() / 1000) };
  const request: GenerateRequest = { requestId: ids.id, tokenIds, sampling: toSampling(body, maxTokens, input.logprobs), stream: true };
  if (input.prefixLength) request.prefixLength = input.prefixLength;
  if (input.grammar) request.grammar = input.grammar;
  const plan: GenerationPlan = {
    config,
    request,
    tokenizer: input.tokenizer,
    choiceCount,
    stop: stopList(body.stop),
    admission,
    waitUntil: waitUntilOf(c),
    clientSignal: c.req.raw.signal,
    ...(api.continuesPrompt ? { continuesPrompt: true } : {}),
    ...(input.toolCallTokenId !== undefined ? { toolCallTokenId: input.toolCallTokenId } : {}),
  };
  if (body.stream) return streamGeneration(plan, api.streamFormat(ids, body.stream_options?.include_usage === true));
  const result = await completeGeneration(plan);
  return c.json(api.response(ids, result), 200, admission.headers);
}
