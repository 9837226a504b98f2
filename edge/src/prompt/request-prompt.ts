// The prompt ids of a chat request, shared by /v1/chat/completions and /tokenize: API messages -> template
// messages, the stored system prompt put in front, tools listed, template errors naming the caller's indices.

import { HttpError, badRequest } from '../../../shared/http-error';
import type { ChatMessageInput } from '../api/request-schemas';
import { waitUntilOf, type AppContext } from '../app-env';
import { TemplateError, type ChatMessage } from '../tokenizer/chat-template';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { ToolPlan } from '../tools/tool-request';
import { buildChatPrompt, type ChatPrompt } from './chat-prompt';
import { systemPrefixCache, systemPromptStore } from './prompt-stores';

export function toChatMessages(messages: ChatMessageInput[]): ChatMessage[] {
  return messages.map((message) => ({
    role: message.role === 'developer' ? 'system' : (message.role as ChatMessage['role']),
    content: typeof message.content === 'string' ? message.content : (message.content ?? []).map((part) => part.text ?? '').join('\n'),
    ...(message.tool_calls?.length
      ? { toolCalls: message.tool_calls.map((call) => ({ id: call.id, name: call.function.name, arguments: call.function.arguments })) }
      : {}),
    ...(message.tool_call_id !== undefined ? { toolCallId: message.tool_call_id } : {}),
  }));
}

/** Template errors name `messages[i]`; shift i back when a stored system prompt was put in front. */
function templateError(error: TemplateError, shift: number): HttpError {
  const fix = (text: string) => text.replace(/messages\[(\d+)\]/g, (_, i: string) => `messages[${Number(i) - shift}]`);
  return badRequest(fix(error.message), fix(error.param));
}

async function withStoredSystemPrompt(env: Env, name: string | null, messages: ChatMessage[]): Promise<ChatMessage[]> {
  if (!name) return messages;
  const stored = await systemPromptStore(env).get(name);
  if (!stored) throw new HttpError(404, 'not_found', `No system prompt named '${name.slice(0, 128)}'.`, 'system_prompt_id');
  return [{ role: 'system', content: stored.content }, ...messages];
}

/**
 * The request's prompt: `systemPromptName` (from system_prompt_id or the model alias) put in front of the
 * messages, the tools of `planTools()` (run once the stored prompt is known to exist) listed, the system
 * prefix taken from the isolate's cache where it can be. Returns the tool plan with the prompt.
 */
export async function chatRequestPrompt(
  c: AppContext,
  tokenizer: Tokenizer,
  systemPromptName: string | null,
  inputs: ChatMessageInput[],
  planTools: () => ToolPlan,
): Promise<{ prompt: ChatPrompt; tools: ToolPlan }> {
  const messages = await withStoredSystemPrompt(c.env, systemPromptName, toChatMessages(inputs));
  const tools = planTools();
  try {
    return { prompt: await buildChatPrompt(tokenizer, messages, systemPrefixCache, waitUntilOf(c), { tools: tools.tools }), tools };
  } catch (error) {
    if (error instanceof TemplateError) throw templateError(error, systemPromptName ? 1 : 0);
    throw error;
  }
}
