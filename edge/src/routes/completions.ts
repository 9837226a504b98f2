// POST /v1/completions (legacy text completions): prompt text (or prompt token ids) -> [BOS] + ids, no template;
// generation/run-generation.ts does the rest in the text_completion wire format.

import type { SampledLogprob } from '../../../shared/protocol';
import { badRequest } from '../../../shared/http-error';
import { appendCompletionLogprobs, openAiUsage, type CompletionLogprobs } from '../api/openai-shapes';
import { completionRequestSchema } from '../api/request-schemas';
import type { AppContext } from '../app-env';
import type { StreamFormat } from '../generation/generation-plan';
import { runGeneration, type GenerationApi, type ResponseIds } from '../generation/run-generation';
import { encodeCompletionPrompt } from '../tokenizer/chat-template';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { responseFormatGrammar } from '../tools/tool-request';
import { readGenerationRequest, responseHead } from './generation-request';

/** OpenAI's default for /v1/completions. */
const DEFAULT_COMPLETION_TOKENS = 16;

/** The request's logprobs (how many alternatives) and return_tokens_as_token_ids; null when not asked for. */
type LogprobsAsked = { top: number; asTokenIds: boolean } | null;

function logprobsFor(tokenizer: Tokenizer, entries: SampledLogprob[], offset: number, asked: NonNullable<LogprobsAsked>): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: asked.top > 0 ? [] : null, text_offset: [] };
  appendCompletionLogprobs(out, tokenizer, entries, offset, asked.asTokenIds);
  return out;
}

function completionFormat(ids: ResponseIds, tokenizer: Tokenizer, asked: LogprobsAsked, includeUsage: boolean): StreamFormat {
  const base = responseHead(ids, 'text_completion');
  const offsets: number[] = [];
  return {
    opening: () => null,
    delta: (choice, text, entries) => {
      const offset = offsets[choice] ?? 0;
      offsets[choice] = offset + text.length;
      const lp = asked ? logprobsFor(tokenizer, entries, offset, asked) : null;
      return { ...base, choices: [{ index: choice, text, logprobs: lp, finish_reason: null }] };
    },
    finish: (choice, finishReason) => ({ ...base, choices: [{ index: choice, text: '', logprobs: null, finish_reason: finishReason }] }),
    usage: (usage) => (includeUsage ? { ...base, choices: [], usage: openAiUsage(usage) } : null),
  };
}

function completionApi(tokenizer: Tokenizer, asked: LogprobsAsked): GenerationApi {
  return {
    idPrefix: 'cmpl',
    promptParam: 'prompt',
    continuesPrompt: true,
    streamFormat: (ids, includeUsage) => completionFormat(ids, tokenizer, asked, includeUsage),
    response: (ids, result) => ({
      ...responseHead(ids, 'text_completion'),
      choices: result.choices.map((choice, index) => ({
        index,
        text: choice.text,
        logprobs: asked ? logprobsFor(tokenizer, choice.logprobs, 0, asked) : null,
        finish_reason: choice.finishReason ?? 'stop',
      })),
      usage: openAiUsage(result.usage),
    }),
  };
}

export async function completions(c: AppContext): Promise<Response> {
  const { config, body, model, systemPromptName, tokenizer } = await readGenerationRequest(c, completionRequestSchema);
  if (systemPromptName) throw badRequest('Stored system prompts apply to /v1/chat/completions only.', 'system_prompt_id');
  const grammar = responseFormatGrammar(body.response_format);
  let tokenIds: number[];
  if (typeof body.prompt === 'string' || typeof body.prompt[0] === 'string') {
    tokenIds = encodeCompletionPrompt(tokenizer, typeof body.prompt === 'string' ? body.prompt : (body.prompt[0] as string));
  } else {
    tokenIds = body.prompt as number[];
    const bad = tokenIds.findIndex((id) => id >= tokenizer.vocabSize);
    if (bad !== -1) throw badRequest(`Token id ${tokenIds[bad]} is outside the vocabulary (${tokenizer.vocabSize}).`, `prompt[${bad}]`);
  }
  const asked = body.logprobs !== undefined ? { top: body.logprobs, asTokenIds: body.return_tokens_as_token_ids ?? false } : null;
  return runGeneration(c, completionApi(tokenizer, asked), {
    body,
    model,
    tokenizer,
    tokenIds,
    // OpenAI's default of 16 (less when the prompt leaves less room); reserved whole at admission.
    requestedMaxTokens: body.max_tokens ?? Math.min(DEFAULT_COMPLETION_TOKENS, config.maxModelLen - tokenIds.length),
    logprobs: body.logprobs,
    grammar,
  });
}
