// Mistral chat templates as token ids, following mistral-common (the authority): v1 (7B v0.1/v0.2) writes
// "[INST] ... [/INST]" as text; v3 (7B v0.3) uses control ids 3/4. Also the system-prompt cache prefix.
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

import type { Tokenizer } from './tokenizer';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface EncodeChatOptions {
  /** Accept a final assistant message (encoded with its EOS). Default false: serving requires a user turn. */
  finalAssistant?: boolean;
  /**
   * tokenIds.slice(0, systemPrefixLength) of an earlier encodeChat with the same tokenizer and system prompt:
   * reused instead of tokenizing the system prompt again (same result). Ignored where no prefix applies.
   */
  systemPrefixIds?: number[];
}

export class TemplateError extends Error {
  readonly param: string;

  constructor(message: string, param: string) {
    super(message);
    this.name = 'TemplateError';
    this.param = param;
  }
}

const INST_ID = 3; // v3 control piece [INST]
const END_INST_ID = 4; // v3 control piece [/INST]

interface Turn {
  role: 'user' | 'assistant';
  content: string;
}

function parseConversation(messages: ChatMessage[], options: EncodeChatOptions): { system: string | null; turns: Turn[] } {
  if (messages.length === 0) throw new TemplateError('messages must contain at least one user message', 'messages');
  const systemParts: string[] = [];
  let index = 0;
  for (; index < messages.length && messages[index].role === 'system'; index++) {
    if (messages[index].content) systemParts.push(messages[index].content);
  }
  const turns: Turn[] = [];
  for (; index < messages.length; index++) {
    const { role, content } = messages[index];
    const expected = turns.length % 2 === 0 ? 'user' : 'assistant';
    if (role !== expected) {
      const why = role === 'system' ? 'system messages must come before the conversation' : `expected role '${expected}'`;
      throw new TemplateError(`messages[${index}].role is '${role}': ${why} (roles alternate user/assistant)`, `messages[${index}].role`);
    }
    if (role === 'assistant' && content.length === 0) {
      throw new TemplateError(`messages[${index}].content: assistant message content must be non-empty`, `messages[${index}].content`);
    }
    turns.push({ role, content });
  }
  if (turns.length === 0) throw new TemplateError('messages must contain at least one user message', 'messages');
  const last = turns[turns.length - 1];
  if (last.role !== 'user' && !options.finalAssistant) {
    const lastIndex = messages.length - 1;
    throw new TemplateError(`messages[${lastIndex}].role is 'assistant': the last message must be from the user`, `messages[${lastIndex}].role`);
  }
  return { system: systemParts.length > 0 ? systemParts.join('\n\n') : null, turns };
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
  const tokenIds = [tokenizer.bosTokenId];
  const append = (ids: number[]) => {
    for (const id of ids) tokenIds.push(id);
  };
  const v3 = tokenizer.templateVersion === 'v3';
  const userTurnCount = turns.filter((turn) => turn.role === 'user').length;
  // Text before the user's words that only the system prompt decides, and how many leading ids precede it
  // ([BOS] in v1, [BOS, [INST]] in v3); null where the system prompt is not at the start.
  const cacheable = system !== null && (!v3 || userTurnCount === 1);
  const systemText = v3 ? `${system}\n\n` : `[INST] ${system}\n\n`;
  const leadingIds = v3 ? 2 : 1;
  const cached = cacheable ? options.systemPrefixIds : undefined;
  if (cached && (cached.length < leadingIds || cached[0] !== tokenizer.bosTokenId)) throw new Error('systemPrefixIds do not start a chat prompt');
  let userTurn = 0;
  for (const turn of turns) {
    if (turn.role === 'assistant') {
      // v3 strips trailing spaces only: mistral-common's rstrip(" "), so a trailing newline stays.
      append(tokenizer.encode(v3 ? turn.content.replace(/ +$/, '') : turn.content));
      tokenIds.push(tokenizer.eosTokenId);
      continue;
    }
    userTurn++;
    const withSystem = system !== null && (v3 ? userTurn === userTurnCount : userTurn === 1);
    if (v3) tokenIds.push(INST_ID);
    const before = v3 ? '' : '[INST] ';
    const after = v3 ? '' : ' [/INST]';
    if (withSystem && cached) append(tokenizer.encodeWithStablePrefix(systemText, cached.slice(leadingIds), `${turn.content}${after}`));
    else append(tokenizer.encode(withSystem ? `${systemText}${turn.content}${after}` : `${before}${turn.content}${after}`));
    if (v3) tokenIds.push(END_INST_ID);
  }
  let systemPrefixLength: number | null = null;
  if (cacheable) systemPrefixLength = cached ? cached.length : leadingIds + tokenizer.stablePrefixLength(systemText);
  return { tokenIds, systemPrefixLength };
}

/** Prompt ids for /v1/completions: [BOS] + encode(prompt). */
export function encodeCompletionPrompt(tokenizer: Tokenizer, prompt: string): number[] {
  return [tokenizer.bosTokenId, ...tokenizer.encode(prompt)];
}
