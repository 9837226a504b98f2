// Chat prompt ids with the system prompt's ids taken from SystemPrefixCache on a hit: the conversation is
// tokenized with a one-letter stand-in system prompt and the cached prefix replaces the stand-in's prefix.
// That splice is exact because the prefix ends where no merge can cross (see encodeChat's systemPrefixLength);
// it is checked against a full tokenization the first time a system prompt is seen, and never used if it differs.

import { encodeChat, type ChatMessage, type EncodeChatOptions } from '../tokenizer/chat-template';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { SystemPrefixCache, contentHash } from './system-prefix-cache';

const STAND_IN = 's';

export interface ChatPrompt {
  tokenIds: number[];
  /** Leading ids that depend only on the system prompt (what a backend prefix cache can share), or null. */
  systemPrefixLength: number | null;
  systemCache: 'hit' | 'miss' | 'none';
}

function leadingSystemCount(messages: ChatMessage[]): number {
  let count = 0;
  while (count < messages.length && messages[count].role === 'system') count++;
  return count;
}

function sameIds(a: number[], b: number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The conversation with its leading system messages replaced by a stand-in (indices kept for error params). */
function withStandIn(messages: ChatMessage[], systemCount: number): ChatMessage[] {
  return messages.map((message, index) => (index >= systemCount ? message : { role: 'system', content: index === 0 ? STAND_IN : '' }));
}

function splice(tokenizer: Tokenizer, messages: ChatMessage[], systemCount: number, prefix: number[]): number[] | null {
  const standIn = encodeChat(tokenizer, withStandIn(messages, systemCount));
  if (standIn.systemPrefixLength === null) return null;
  return prefix.concat(standIn.tokenIds.slice(standIn.systemPrefixLength));
}

export async function buildChatPrompt(
  tokenizer: Tokenizer,
  messages: ChatMessage[],
  cache: SystemPrefixCache,
  waitUntil: (promise: Promise<unknown>) => void,
  options: Pick<EncodeChatOptions, 'tools'> = {},
): Promise<ChatPrompt> {
  const systemCount = leadingSystemCount(messages);
  const systemTexts = messages
    .slice(0, systemCount)
    .map((m) => m.content)
    .filter((text) => text.length > 0);
  // A tool list goes before the system prompt's [INST] (v3): no prefix to share, nothing to cache.
  if (systemTexts.length === 0 || options.tools?.length) return { ...encodeChat(tokenizer, messages, options), systemCache: 'none' };

  const key = SystemPrefixCache.key(tokenizer, await contentHash(JSON.stringify(systemTexts)));
  const entry = await cache.get(key);
  if (entry?.composable) {
    const tokenIds = splice(tokenizer, messages, systemCount, entry.tokenIds);
    if (tokenIds) return { tokenIds, systemPrefixLength: entry.tokenIds.length, systemCache: 'hit' };
  }
  const full = encodeChat(tokenizer, messages);
  if (full.systemPrefixLength === null) return { ...full, systemCache: 'none' };
  if (!entry) {
    const prefix = full.tokenIds.slice(0, full.systemPrefixLength);
    const spliced = splice(tokenizer, messages, systemCount, prefix);
    waitUntil(cache.put(key, { tokenIds: prefix, composable: spliced !== null && sameIds(spliced, full.tokenIds) }));
  }
  return { ...full, systemCache: 'miss' };
}
