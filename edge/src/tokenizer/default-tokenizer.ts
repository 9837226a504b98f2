// The tokenizer the worker serves with: the asset written by `npm run build:tokenizer`
// (edge/generated/tokenizer.json, git-ignored), parsed by the bundler once and turned into tables lazily.

import asset from '../../generated/tokenizer.json';
import { Tokenizer } from './tokenizer';
import type { TokenizerAsset } from './tokenizer-asset';

let cached: Tokenizer | undefined;
let override: Tokenizer | undefined;

/** One Tokenizer per isolate, built on first use (~tens of ms), then shared by every request. */
export function getDefaultTokenizer(): Tokenizer {
  if (override) return override;
  cached ??= Tokenizer.fromAsset(asset as TokenizerAsset);
  return cached;
}

/** Tests only: serve with another tokenizer (e.g. v3 for function calling) until called with undefined. */
export function overrideDefaultTokenizer(tokenizer: Tokenizer | undefined): void {
  override = tokenizer;
}
