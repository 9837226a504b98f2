// Mistral chat templates as token ids, following mistral-common (the authority): v1 (7B v0.1/v0.2) writes
// "[INST] ... [/INST]" as text; v3 (7B v0.3) uses control ids 3/4 (what differs per version:
// template-versions.ts). Also the system-prompt cache prefix.
//
// Rules (mistral-common's InstructTokenizerV1/V3 with its request validator):
// - Optional leading system messages, joined with "\n\n" (empty ones skipped, as mistral-common does).
// - Then roles strictly alternate user, assistant, user, ...; the conversation must start with a user turn.
//   (mistral-common would merge consecutive same-role messages; the edge rejects them instead, so clients
//   see their mistake rather than a silently merged prompt.)
// - The last message must be a user message (mistral-common's serving mode). An assistant message last is
//   only accepted with `{ finalAssistant: true }` (mistral-common's test mode: it gets its EOS like any
//   assistant turn, which is how its published vectors are made); there is no "continue this reply" mode.
// - Assistant content must be non-empty; v3 drops its trailing spaces (rstrip(" "), not other whitespace).
// - v1: system prompt before the FIRST user message; v3: before the LAST.
// - v3 function calling (tools/tool-prompt.ts): an assistant turn may carry tool calls (after its text, if
//   any), tool results follow it, and the conversation may end on them; the tool list goes before the last
//   user turn. v1 vocabularies have no tool tokens and refuse all of it.

import { availableToolsJson, toolCallsJson, toolControlIds, toolResultJson, type ToolCallRecord, type ToolDefinition } from '../tools/tool-prompt';
import { TEMPLATE_VERSIONS } from './template-versions';
import type { Tokenizer } from './tokenizer';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  /** Assistant messages: the calls it made. */
  toolCalls?: ToolCallRecord[];
  /** Tool messages: the call this result answers. */
  toolCallId?: string;
}

export interface EncodeChatOptions {
  /** Accept a final assistant message (encoded with its EOS). Default false: serving requires a user turn. */
  finalAssistant?: boolean;
  /**
   * tokenIds.slice(0, systemPrefixLength) of an earlier encodeChat with the same tokenizer and system prompt:
   * reused instead of tokenizing the system prompt again (same result). Ignored where no prefix applies.
   */
  systemPrefixIds?: number[];
  /** Tools offered to the model (v3 only), written before the last user turn. */
  tools?: ToolDefinition[];
}

export class TemplateError extends Error {
  readonly param: string;

  constructor(message: string, param: string) {
    super(message);
    this.name = 'TemplateError';
    this.param = param;
  }
}

interface Turn {
  role: 'user' | 'assistant' | 'tool';
  content: string;
  toolCalls?: ToolCallRecord[];
  toolCallId?: string;
}

/** Why `role` may not follow `previous` (null: it may). Tool results answer an assistant's tool calls. */
function orderError(role: Turn['role'], previous: Turn | undefined): string | null {
  if (role === 'tool')
    return previous && (previous.role === 'tool' || previous.toolCalls)
      ? null
      : 'a tool message must follow an assistant message with tool_calls (or another tool message)';
  const expected = role === 'user' ? 'assistant' : 'user';
  if (!previous) return role === 'user' ? null : "expected role 'user' (roles alternate user/assistant)";
  return previous.role === expected || previous.role === 'tool' ? null : `expected role '${expected}' (roles alternate user/assistant)`;
}

function parseConversation(messages: ChatMessage[], options: EncodeChatOptions): { system: string | null; turns: Turn[] } {
  if (messages.length === 0) throw new TemplateError('messages must contain at least one user message', 'messages');
  const systemParts: string[] = [];
  let index = 0;
  for (; index < messages.length && messages[index].role === 'system'; index++) {
    if (messages[index].content) systemParts.push(messages[index].content);
  }
  const turns: Turn[] = [];
  let openCallIds = new Set<string>();
  for (; index < messages.length; index++) {
    const { role, content, toolCalls, toolCallId } = messages[index];
    if (role === 'system') {
      throw new TemplateError(`messages[${index}].role is 'system': system messages must come before the conversation`, `messages[${index}].role`);
    }
    const why = orderError(role, turns[turns.length - 1]);
    if (why !== null) throw new TemplateError(`messages[${index}].role is '${role}': ${why}`, `messages[${index}].role`);
    const calls = toolCalls && toolCalls.length > 0 ? toolCalls : undefined;
    if (role === 'assistant' && content.length === 0 && !calls) {
      throw new TemplateError(`messages[${index}].content: assistant message content must be non-empty (or carry tool_calls)`, `messages[${index}].content`);
    }
    if (role === 'assistant') openCallIds = new Set((calls ?? []).map((call) => call.id));
    if (role === 'tool' && (toolCallId === undefined || !openCallIds.has(toolCallId))) {
      throw new TemplateError(
        `messages[${index}].tool_call_id ${JSON.stringify(toolCallId ?? null)} matches no tool call of the assistant message before it`,
        `messages[${index}].tool_call_id`,
      );
    }
    turns.push({ role, content, toolCalls: calls, toolCallId });
  }
  if (!turns.some((turn) => turn.role === 'user')) throw new TemplateError('messages must contain at least one user message', 'messages');
  const last = turns[turns.length - 1];
  if (last.role === 'assistant' && !options.finalAssistant) {
    const lastIndex = messages.length - 1;
    throw new TemplateError(
      `messages[${lastIndex}].role is 'assistant': the last message must be from the user (or a tool result)`,
      `messages[${lastIndex}].role`,
    );
  }
  return { system: systemParts.length > 0 ? systemParts.join('\n\n') : null, turns };
}

const NO_TOOL_TOKENS =
  "this model's tokenizer has no tool-call tokens ([TOOL_CALLS], [AVAILABLE_TOOLS]); function calling needs a v3 (Mistral 7B v0.3) tokenizer";

/** The tool control ids when the chat uses function calling (refused on a vocabulary without them). */
function toolIdsFor(tokenizer: Tokenizer, messages: ChatMessage[], tools: ToolDefinition[] | undefined) {
  const usedAt = messages.findIndex((m) => m.role === 'tool' || (m.toolCalls?.length ?? 0) > 0);
  if (usedAt === -1 && !tools?.length) return null;
  const ids = toolControlIds(tokenizer);
  if (ids) return ids;
  if (tools?.length) throw new TemplateError(`tools: ${NO_TOOL_TOKENS}`, 'tools');
  const field = messages[usedAt].role === 'tool' ? 'role' : 'tool_calls';
  throw new TemplateError(`messages[${usedAt}].${field}: ${NO_TOOL_TOKENS}`, `messages[${usedAt}].${field}`);
}

/**
 * Prompt ids for a chat. `systemPrefixLength` is how many leading ids are a function of the system prompt
 * alone, identical in every conversation that reports a value for the same system prompt (a backend prefix
 * cache can hold them):
 * - v1: [BOS] + the ids of "[INST] " + system + "\n\n" up to the last point no merge can cross; in Mistral's
 *   vocabulary "\n" is in no multi-character piece, so that is the whole text, "\n\n" included.
 * - v3: the system prompt sits in the LAST user turn, so only single-turn chats share it: [BOS, [INST]] + the
 *   stable ids of system + "\n\n". Multi-turn v3 chats report null.
 * - null without a system prompt.
 */
export function encodeChat(
  tokenizer: Tokenizer,
  messages: ChatMessage[],
  options: EncodeChatOptions = {},
): { tokenIds: number[]; systemPrefixLength: number | null } {
  const { system, turns } = parseConversation(messages, options);
  const toolIds = toolIdsFor(tokenizer, messages, options.tools);
  const tools = options.tools?.length ? options.tools : null;
  const tokenIds = [tokenizer.bosTokenId];
  const append = (ids: number[]) => {
    for (const id of ids) tokenIds.push(id);
  };
  const template = TEMPLATE_VERSIONS[tokenizer.templateVersion];
  const userTurnCount = turns.filter((turn) => turn.role === 'user').length;
  const systemTurn = template.systemTurn(userTurnCount);
  // Text before the user's words that only the system prompt decides, and how many leading ids precede it
  // ([BOS] in v1, [BOS, [INST]] in v3); shared only where the system prompt is in the first user turn.
  // The tool list goes before the user turn that holds the system prompt, so no prefix is shared then.
  const cacheable = system !== null && systemTurn === 1 && tools === null;
  const systemText = `${template.openText}${system}\n\n`;
  const leadingIds = 1 + template.openIds.length;
  const cached = cacheable ? options.systemPrefixIds : undefined;
  if (cached && (cached.length < leadingIds || cached[0] !== tokenizer.bosTokenId)) throw new Error('systemPrefixIds do not start a chat prompt');
  let userTurn = 0;
  for (const turn of turns) {
    if (turn.role === 'assistant') {
      append(tokenizer.encode(template.assistantText(turn.content)));
      // mistral-common refuses text and calls in one message; the edge keeps both, in the order the model wrote them.
      if (turn.toolCalls && toolIds) {
        tokenIds.push(toolIds.toolCalls);
        append(tokenizer.encode(toolCallsJson(turn.toolCalls)));
      }
      tokenIds.push(tokenizer.eosTokenId);
      continue;
    }
    if (turn.role === 'tool' && toolIds) {
      tokenIds.push(toolIds.toolResults);
      append(tokenizer.encode(toolResultJson(turn.content, turn.toolCallId!)));
      tokenIds.push(toolIds.endToolResults);
      continue;
    }
    userTurn++;
    const withSystem = system !== null && userTurn === systemTurn;
    if (tools && toolIds && userTurn === userTurnCount) {
      tokenIds.push(toolIds.availableTools);
      append(tokenizer.encode(availableToolsJson(tools)));
      tokenIds.push(toolIds.endAvailableTools);
    }
    append(template.openIds);
    const words = `${turn.content}${template.closeText}`;
    if (withSystem && cached) append(tokenizer.encodeWithStablePrefix(systemText, cached.slice(leadingIds), words));
    else append(tokenizer.encode(withSystem ? `${systemText}${words}` : `${template.openText}${words}`));
    append(template.closeIds);
  }
  let systemPrefixLength: number | null = null;
  if (cacheable) systemPrefixLength = cached ? cached.length : leadingIds + tokenizer.stablePrefixLength(systemText);
  return { tokenIds, systemPrefixLength };
}

/** Prompt ids for /v1/completions: [BOS] + encode(prompt). */
export function encodeCompletionPrompt(tokenizer: Tokenizer, prompt: string): number[] {
  return [tokenizer.bosTokenId, ...tokenizer.encode(prompt)];
}
