// POST /v1/completions (legacy text completions): prompt text (or prompt token ids) -> [BOS] + ids, no template.

import type { SampledLogprob } from '../../../shared/protocol';
import { appendCompletionLogprobs, openAiUsage, type CompletionLogprobs } from '../api/openai-shapes';
import { readJsonBody, validate } from '../api/read-request';
import { completionRequestSchema } from '../api/request-schemas';
import { waitUntilOf, type AppContext } from '../app-env';
import { completeGeneration } from '../generation/complete-generation';
import type { GenerationPlan, StreamFormat } from '../generation/generation-plan';
import { streamGeneration } from '../generation/stream-generation';
import { badRequest } from '../../../shared/http-error';
import { admitRequest } from '../rate-limit/rate-limit-gate';
import { encodeCompletionPrompt } from '../tokenizer/chat-template';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { responseFormatGrammar } from '../tools/tool-request';
import { newRequestId, resolveMaxTokens, resolveModel, stopList, toSampling } from './generation-setup';

/** OpenAI's default for /v1/completions. */
const DEFAULT_COMPLETION_TOKENS = 16;

function logprobsFor(tokenizer: Tokenizer, entries: SampledLogprob[], offset: number, top: boolean): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: top ? [] : null, text_offset: [] };
  appendCompletionLogprobs(out, tokenizer, entries, offset);
  return out;
}

function completionFormat(id: string, model: string, created: number, tokenizer: Tokenizer, logprobs: number | undefined, includeUsage: boolean): StreamFormat {
  const base = { id, object: 'text_completion', created, model, system_fingerprint: null };
  const offsets: number[] = [];
  return {
    opening: () => null,
    delta: (choice, text, entries) => {
      const offset = offsets[choice] ?? 0;
      offsets[choice] = offset + text.length;
      const lp = logprobs !== undefined ? logprobsFor(tokenizer, entries, offset, logprobs > 0) : null;
      return { ...base, choices: [{ index: choice, text, logprobs: lp, finish_reason: null }] };
    },
    finish: (choice, finishReason) => ({ ...base, choices: [{ index: choice, text: '', logprobs: null, finish_reason: finishReason }] }),
    usage: (usage) => (includeUsage ? { ...base, choices: [], usage: openAiUsage(usage) } : null),
  };
}

export async function completions(c: AppContext): Promise<Response> {
  const config = c.get('config');
  const body = validate(completionRequestSchema, await readJsonBody(c.req.raw, config.maxBodyBytes));
  const { model, systemPromptName } = resolveModel(body.model, body.system_prompt_id, config);
  if (systemPromptName) throw badRequest('Stored system prompts apply to /v1/chat/completions only.', 'system_prompt_id');
  const tokenizer = getDefaultTokenizer();
  const grammar = responseFormatGrammar(body.response_format);
  let tokenIds: number[];
  if (typeof body.prompt === 'string' || typeof body.prompt[0] === 'string') {
    tokenIds = encodeCompletionPrompt(tokenizer, typeof body.prompt === 'string' ? body.prompt : (body.prompt[0] as string));
  } else {
    tokenIds = body.prompt as number[];
    const bad = tokenIds.findIndex((id) => id >= tokenizer.vocabSize);
    if (bad !== -1) throw badRequest(`Token id ${tokenIds[bad]} is outside the vocabulary (${tokenizer.vocabSize}).`, `prompt[${bad}]`);
  }
  const choiceCount = body.n ?? 1;
  const maxTokens = resolveMaxTokens(body.max_tokens ?? Math.min(DEFAULT_COMPLETION_TOKENS, config.maxModelLen - tokenIds.length), tokenIds.length, config, 'prompt');
  const admission = await admitRequest(c.env.RATE_LIMITER, c.get('apiKey'), tokenIds.length + maxTokens * choiceCount);
  const id = newRequestId('cmpl');
  const plan: GenerationPlan = {
    config,
    request: { requestId: id, tokenIds, sampling: toSampling(body, maxTokens, body.logprobs), stream: true, ...(grammar ? { grammar } : {}) },
    tokenizer,
    choiceCount,
    stop: stopList(body.stop),
    continuesPrompt: true,
    admission,
    waitUntil: waitUntilOf(c),
    clientSignal: c.req.raw.signal,
  };
  const created = Math.floor(Date.now() / 1000);
  if (body.stream) return streamGeneration(plan, completionFormat(id, model, created, tokenizer, body.logprobs, body.stream_options?.include_usage === true));
  const result = await completeGeneration(plan);
  return c.json(
    {
      id,
      object: 'text_completion',
      created,
      model,
      system_fingerprint: null,
      choices: result.choices.map((choice, index) => ({
        index,
        text: choice.text,
        logprobs: body.logprobs !== undefined ? logprobsFor(tokenizer, choice.logprobs, 0, body.logprobs > 0) : null,
        finish_reason: choice.finishReason ?? 'stop',
      })),
      usage: openAiUsage(result.usage),
    },
    200,
    admission.headers,
  );
}
