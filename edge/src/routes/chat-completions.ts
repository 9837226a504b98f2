// POST /v1/chat/completions: validate, resolve the model and stored system prompt, template + tokenize with
// tools (prompt/request-prompt.ts); generation/run-generation.ts does the rest in this API's wire format
// (chat.completion.chunk SSE, or one chat.completion).

import type { SampledLogprob } from '../../../shared/protocol';
import { chatLogprobs, openAiUsage } from '../api/openai-shapes';
import { chatRequestSchema } from '../api/request-schemas';
import type { AppContext } from '../app-env';
import type { StreamFormat, ToolCallResult } from '../generation/generation-plan';
import { runGeneration, type GenerationApi, type ResponseIds } from '../generation/run-generation';
import { chatRequestPrompt } from '../prompt/request-prompt';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { planTools } from '../tools/tool-request';
import { readGenerationRequest, responseHead } from './generation-request';

/** OpenAI's message.tool_calls (null content when the model wrote no text before its calls). */
function assistantMessage(text: string, toolCalls: ToolCallResult[]) {
  if (toolCalls.length === 0) return { role: 'assistant', content: text, refusal: null };
  const calls = toolCalls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }));
  return { role: 'assistant', content: text || null, refusal: null, tool_calls: calls };
}

/** How logprobs are written: null when not asked for; asTokenIds for return_tokens_as_token_ids. */
type LogprobsLabel = { asTokenIds: boolean } | null;

function chatFormat(ids: ResponseIds, tokenizer: Tokenizer, label: LogprobsLabel, includeUsage: boolean): StreamFormat {
  const base = responseHead(ids, 'chat.completion.chunk');
  const extra = includeUsage ? { usage: null } : {};
  return {
    opening: (choice) => ({ ...base, choices: [{ index: choice, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], ...extra }),
    delta: (choice, text, logprobs) => ({
      ...base,
      choices: [
        {
          index: choice,
          delta: { content: text },
          logprobs: label ? { content: chatLogprobs(tokenizer, logprobs, label.asTokenIds) } : null,
          finish_reason: null,
        },
      ],
      ...extra,
    }),
    finish: (choice, finishReason) => ({ ...base, choices: [{ index: choice, delta: {}, logprobs: null, finish_reason: finishReason }], ...extra }),
    toolCall: (choice, delta) => ({ ...base, choices: [{ index: choice, delta: { tool_calls: [delta] }, logprobs: null, finish_reason: null }], ...extra }),
    usage: (usage) => (includeUsage ? { ...base, choices: [], usage: openAiUsage(usage) } : null),
  };
}

function chatApi(tokenizer: Tokenizer, label: LogprobsLabel): GenerationApi {
  const logprobsOf = (entries: SampledLogprob[]) => (label ? { content: chatLogprobs(tokenizer, entries, label.asTokenIds) } : null);
  return {
    idPrefix: 'chatcmpl',
    promptParam: 'messages',
    streamFormat: (ids, includeUsage) => chatFormat(ids, tokenizer, label, includeUsage),
    response: (ids, result) => ({
      ...responseHead(ids, 'chat.completion'),
      choices: result.choices.map((choice, index) => ({
        index,
        message: assistantMessage(choice.text, choice.toolCalls),
        logprobs: logprobsOf(choice.logprobs),
        finish_reason: choice.finishReason ?? 'stop',
      })),
      usage: openAiUsage(result.usage),
    }),
  };
}

export async function chatCompletions(c: AppContext): Promise<Response> {
  const { body, model, systemPromptName, tokenizer } = await readGenerationRequest(c, chatRequestSchema);
  const { prompt, tools } = await chatRequestPrompt(c, tokenizer, systemPromptName, body.messages, () => planTools(body, tokenizer));
  const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : undefined;
  const label = logprobs !== undefined ? { asTokenIds: body.return_tokens_as_token_ids ?? false } : null;
  return runGeneration(c, chatApi(tokenizer, label), {
    body,
    model,
    tokenizer,
    tokenIds: prompt.tokenIds,
    requestedMaxTokens: body.max_completion_tokens ?? body.max_tokens,
    logprobs,
    // BOS + template + system prompt: the head other requests share, so the backend keeps it in its prefix cache.
    prefixLength: prompt.systemPrefixLength,
    grammar: tools.grammar,
    toolCallTokenId: tools.toolCallTokenId,
  });
}
