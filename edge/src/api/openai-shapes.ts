// OpenAI wire objects (snake_case, copied exactly): chat.completion(.chunk), text_completion, usage, logprobs.

import type { SampledLogprob, Usage } from '../../../shared/protocol';
import type { Tokenizer } from '../tokenizer/tokenizer';

export interface OpenAiUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export interface TokenLogprobOut {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: { token: string; logprob: number; bytes: number[] | null }[];
}

export function openAiUsage(usage: Usage): OpenAiUsage {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens },
  };
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
const encoder = new TextEncoder();

/** The text a single token stands for, and its bytes (a byte-fallback token is one raw byte). */
function tokenText(tokenizer: Tokenizer, tokenId: number): { token: string; bytes: number[] } {
  const piece = tokenizer.idToPiece(tokenId) ?? '';
  const byte = BYTE_PIECE.exec(piece);
  if (byte) {
    const value = parseInt(byte[1], 16);
    return { token: value < 0x80 ? String.fromCharCode(value) : `bytes:\\x${byte[1].toLowerCase()}`, bytes: [value] };
  }
  const token = piece.replace(/\u2581/g, ' ');
  return { token, bytes: Array.from(encoder.encode(token)) };
}

/**
 * A token as logprobs name it: its text, or with vLLM's return_tokens_as_token_ids "token_id:N", so a
 * client sees the ids generated (text that the edge re-tokenizes may come out as other ids). The bytes
 * stay the token's own either way.
 */
function labelled(tokenizer: Tokenizer, tokenId: number, asTokenIds: boolean): { token: string; bytes: number[] } {
  const text = tokenText(tokenizer, tokenId);
  return asTokenIds ? { token: `token_id:${tokenId}`, bytes: text.bytes } : text;
}

export function chatLogprobs(tokenizer: Tokenizer, entries: SampledLogprob[], asTokenIds: boolean): TokenLogprobOut[] {
  return entries.map((entry) => ({
    ...labelled(tokenizer, entry.tokenId, asTokenIds),
    logprob: entry.logprob,
    top_logprobs: (entry.top ?? []).map((alt) => ({ ...labelled(tokenizer, alt.tokenId, asTokenIds), logprob: alt.logprob })),
  }));
}

/** Legacy /v1/completions logprobs: parallel arrays, text offsets relative to the completion text. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[] | null;
  text_offset: number[];
}

/** Appends `entries`; text offsets follow the tokens' text even when they are named by id. */
export function appendCompletionLogprobs(
  target: CompletionLogprobs,
  tokenizer: Tokenizer,
  entries: SampledLogprob[],
  textOffset: number,
  asTokenIds: boolean,
): void {
  let offset = textOffset;
  for (const entry of entries) {
    target.tokens.push(labelled(tokenizer, entry.tokenId, asTokenIds).token);
    target.token_logprobs.push(entry.logprob);
    target.text_offset.push(offset);
    offset += tokenText(tokenizer, entry.tokenId).token.length;
    if (target.top_logprobs) {
      const top: Record<string, number> = {};
      for (const alt of entry.top ?? []) top[labelled(tokenizer, alt.tokenId, asTokenIds).token] = alt.logprob;
      target.top_logprobs.push(top);
    }
  }
}
