// Request pieces shared by /v1/chat/completions and /v1/completions: model names and aliases, the
// context-length check, max_tokens defaults and OpenAI sampling fields -> backend SamplingParams (the
// renaming itself follows the field table in shared/sampling-fields.ts).

import type { SamplingParams } from '../../../shared/protocol';
import { samplingFromPublic, type PublicSamplingFields } from '../../../shared/sampling-fields';
import type { EdgeConfig } from '../config';
import { HttpError, badRequest } from '../../../shared/http-error';

export interface ResolvedModel {
  /** The name echoed back in responses (what the client asked for). */
  model: string;
  systemPromptName: string | null;
}

/** The 404 for a model name this server does not serve (generation, /tokenize, /v1/models/:id). */
export function modelNotFound(requested: string, modelId: string): HttpError {
  return new HttpError(404, 'model_not_found', `The model '${requested.slice(0, 200)}' does not exist; this server serves '${modelId}'.`, 'model');
}

/** `<MODEL_ID>` or the alias `<MODEL_ID>@<system prompt name>`. */
export function resolveModel(requested: string, systemPromptId: string | undefined, config: EdgeConfig): ResolvedModel {
  const at = requested.indexOf('@');
  const base = at === -1 ? requested : requested.slice(0, at);
  const alias = at === -1 ? null : requested.slice(at + 1);
  if (base !== config.modelId) throw modelNotFound(requested, config.modelId);
  if (alias !== null && alias.length === 0) throw badRequest('The model alias after "@" names no system prompt.', 'model');
  if (alias && systemPromptId && alias !== systemPromptId) {
    throw badRequest('system_prompt_id and the model alias name different system prompts.', 'system_prompt_id');
  }
  return { model: requested, systemPromptName: systemPromptId ?? alias };
}

/** max_tokens, or what is left of the context; refuses before any backend work when it cannot fit. */
export function resolveMaxTokens(requested: number | undefined, promptLength: number, config: EdgeConfig, param: 'messages' | 'prompt'): number {
  const room = config.maxModelLen - promptLength;
  if (room < 1 || (requested !== undefined && requested > room)) {
    const completion = requested ?? 1;
    throw new HttpError(
      400,
      'context_length_exceeded',
      `This model's maximum context length is ${config.maxModelLen} tokens. However, you requested ${promptLength + completion} tokens ` +
        `(${promptLength} in the ${param}, ${completion} in the completion). Please reduce the length of the ${param} or completion.`,
      param,
    );
  }
  return requested ?? room;
}

/** Completion tokens reserved per choice against tokens/minute when a request sets no max_tokens. */
export const UNBOUNDED_COMPLETION_ESTIMATE = 1024;

/**
 * Tokens to reserve against the key's tokens/minute at admission; the request settles its real count when it
 * ends. An explicit max_tokens is reserved whole (a request that cannot fit is refused as too large). Without
 * one (the `openai` client's default) the completion may run to the end of the context: reserve an estimate,
 * capped so that a prompt that fits the budget is never refused as too large.
 */
export function tokensToReserve(promptLength: number, requested: number | undefined, maxTokens: number, choiceCount: number, tpm: number): number {
  if (requested !== undefined) return promptLength + requested * choiceCount;
  const estimate = promptLength + Math.min(maxTokens, UNBOUNDED_COMPLETION_ESTIMATE) * choiceCount;
  return Math.max(promptLength, Math.min(estimate, tpm));
}

/** The backend's sampling: the table's public fields renamed, plus what the route resolved itself. */
export function toSampling(body: PublicSamplingFields & { n?: number }, maxTokens: number, logprobs: number | undefined): Partial<SamplingParams> {
  const sampling: Partial<SamplingParams> = { maxTokens, n: body.n ?? 1, ...samplingFromPublic(body) };
  if (logprobs !== undefined) sampling.logprobs = logprobs;
  return sampling;
}

export function stopList(stop: string | string[] | undefined): string[] {
  const list = stop === undefined ? [] : typeof stop === 'string' ? [stop] : stop;
  // Lone surrogates can never match generated text; make them U+FFFD like the tokenizer does.
  return list.map((s) => (s as string & { toWellFormed(): string }).toWellFormed());
}

export function newRequestId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replace(/-/g, '')}`;
}
