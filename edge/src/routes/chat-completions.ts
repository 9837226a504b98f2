// POST /v1/chat/completions: validate, resolve the system prompt, template + tokenize, check the context,
// admit against the key's limits, then stream (chat.completion.chunk SSE) or answer one chat.completion.

import type { SampledLogprob } from '../../../shared/protocol';
import { chatLogprobs, openAiUsage } from '../api/openai-shapes';
import { readJsonBody, validate } from '../api/read-request';
import { chatRequestSchema, type ChatMessageInput } from '../api/request-schemas';
import { defaultCache, waitUntilOf, type AppContext } from '../app-env';
import { completeGeneration } from '../generation/complete-generation';
import type { GenerationPlan, StreamFormat, ToolCallResult } from '../generation/generation-plan';
import { streamGeneration } from '../generation/stream-generation';
import { HttpError, badRequest } from '../../../shared/http-error';
import { buildChatPrompt } from '../prompt/chat-prompt';
import { SystemPrefixCache } from '../prompt/system-prefix-cache';
import { SystemPromptStore } from '../prompt/system-prompt-store';
import { admitRequest } from '../rate-limit/rate-limit-gate';
import { TemplateError, type ChatMessage } from '../tokenizer/chat-template';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { planTools } from '../tools/tool-request';
import { newRequestId, resolveMaxTokens, resolveModel, stopList, tokensToReserve, toSampling } from './generation-setup';

export const systemPrefixCache = new SystemPrefixCache(defaultCache());

export function toChatMessages(messages: ChatMessageInput[]): ChatMessage[] {
  return messages.map((message) => ({
    role: message.role === 'developer' ? 'system' : (message.role as ChatMessage['role']),
    content: typeof message.content === 'string' ? message.content : (message.content ?? []).map((part) => part.text ?? '').join('\n'),
    ...(message.tool_calls?.length ? { toolCalls: message.tool_calls.map((call) => ({ id: call.id, name: call.function.name, arguments: call.function.arguments })) } : {}),
    ...(message.tool_call_id !== undefined ? { toolCallId: message.tool_call_id } : {}),
  }));
}

/** OpenAI's message.tool_calls (null content when the model wrote no text before its calls). */
function assistantMessage(text: string, toolCalls: ToolCallResult[]) {
  if (toolCalls.length === 0) return { role: 'assistant', content: text, refusal: null };
  const calls = toolCalls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }));
  return { role: 'assistant', content: text || null, refusal: null, tool_calls: calls };
}

/** Template errors name `messages[i]`; shift i back when a stored system prompt was put in front. */
export function templateError(error: TemplateError, shift: number): HttpError {
  const fix = (text: string) => text.replace(/messages\[(\d+)\]/g, (_, i: string) => `messages[${Number(i) - shift}]`);
  return badRequest(fix(error.message), fix(error.param));
}

export async function withStoredSystemPrompt(c: AppContext, name: string | null, messages: ChatMessage[]): Promise<ChatMessage[]> {
  if (!name) return messages;
  const stored = await new SystemPromptStore(c.env.SYSTEM_PROMPTS, defaultCache()).get(name);
  if (!stored) throw new HttpError(404, 'not_found', `No system prompt named '${name.slice(0, 128)}'.`, 'system_prompt_id');
  return [{ role: 'system', content: stored.content }, ...messages];
}

function chatFormat(id: string, model: string, created: number, tokenizer: Tokenizer, withLogprobs: boolean, includeUsage: boolean): StreamFormat {
  const base = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: null };
  const extra = includeUsage ? { usage: null } : {};
  return {
    opening: (choice) => ({ ...base, choices: [{ index: choice, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], ...extra }),
    delta: (choice, text, logprobs) => ({
      ...base,
      choices: [{ index: choice, delta: { content: text }, logprobs: withLogprobs ? { content: chatLogprobs(tokenizer, logprobs) } : null, finish_reason: null }],
      ...extra,
    }),
    finish: (choice, finishReason) => ({ ...base, choices: [{ index: choice, delta: {}, logprobs: null, finish_reason: finishReason }], ...extra }),
    toolCall: (choice, delta) => ({ ...base, choices: [{ index: choice, delta: { tool_calls: [delta] }, logprobs: null, finish_reason: null }], ...extra }),
    usage: (usage) => (includeUsage ? { ...base, choices: [], usage: openAiUsage(usage) } : null),
  };
}

export async function chatCompletions(c: AppContext): Promise<Response> {
  const config = c.get('config');
  const body = validate(chatRequestSchema, await readJsonBody(c.req.raw, config.maxBodyBytes));
  const { model, systemPromptName } = resolveModel(body.model, body.system_prompt_id, config);
  const tokenizer = getDefaultTokenizer();
  const shift = systemPromptName ? 1 : 0;
  const messages = await withStoredSystemPrompt(c, systemPromptName, toChatMessages(body.messages));
  const waitUntil = waitUntilOf(c);
  const tools = planTools(body, tokenizer);
  let prompt;
  try {
    prompt = await buildChatPrompt(tokenizer, messages, systemPrefixCache, waitUntil, { tools: tools.tools });
  } catch (error) {
    if (error instanceof TemplateError) throw templateError(error, shift);
    throw error;
  }
  const choiceCount = body.n ?? 1;
  const requestedMaxTokens = body.max_completion_tokens ?? body.max_tokens;
  const maxTokens = resolveMaxTokens(requestedMaxTokens, prompt.tokenIds.length, config, 'messages');
  const apiKey = c.get('apiKey');
  const reserve = tokensToReserve(prompt.tokenIds.length, requestedMaxTokens, maxTokens, choiceCount, apiKey.limits.tpm);
  const admission = await admitRequest(c.env.RATE_LIMITER, apiKey, reserve);
  const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : undefined;
  const id = newRequestId('chatcmpl');
  const plan: GenerationPlan = {
    config,
    request: {
      requestId: id,
      tokenIds: prompt.tokenIds,
      sampling: toSampling(body, maxTokens, logprobs),
      stream: true,
      // BOS + template + system prompt: the head other requests share, so the backend keeps it in its prefix cache.
      ...(prompt.systemPrefixLength ? { prefixLength: prompt.systemPrefixLength } : {}),
      ...(tools.grammar ? { grammar: tools.grammar } : {}),
    },
    toolCallTokenId: tools.toolCallTokenId,
    tokenizer,
    choiceCount,
    stop: stopList(body.stop),
    admission,
    waitUntil,
    clientSignal: c.req.raw.signal,
  };
  const created = Math.floor(Date.now() / 1000);
  if (body.stream) {
    return streamGeneration(plan, chatFormat(id, model, created, tokenizer, logprobs !== undefined, body.stream_options?.include_usage === true));
  }
  const result = await completeGeneration(plan);
  const logprobsOf = (entries: SampledLogprob[]) => (logprobs !== undefined ? { content: chatLogprobs(tokenizer, entries) } : null);
  return c.json(
    {
      id,
      object: 'chat.completion',
      created,
      model,
      system_fingerprint: null,
      choices: result.choices.map((choice, index) => ({
        index,
        message: assistantMessage(choice.text, choice.toolCalls),
        logprobs: logprobsOf(choice.logprobs),
        finish_reason: choice.finishReason ?? 'stop',
      })),
      usage: openAiUsage(result.usage),
    },
    200,
    admission.headers,
  );
}
