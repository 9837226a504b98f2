// Test-only helpers: tokenizers from the real SentencePiece models (workerd blob bindings) and the published
// vectors, so every tokenizer test file compares against the same independent references.

import { env } from 'cloudflare:test';
import { Tokenizer } from './tokenizer';

interface FixtureEnv {
  FIXTURE_TOKENIZER_V1: ArrayBuffer;
  FIXTURE_TOKENIZER_V3: ArrayBuffer;
  FIXTURE_PUBLISHED_VECTORS: string;
}

export interface PublishedVector {
  kind: 'raw' | 'chat';
  source: string;
  text?: string;
  bos?: boolean;
  messages?: [string, string][];
  system?: string | null;
  expected: number[];
  v3_expected?: number[];
}

const fixtures = env as unknown as FixtureEnv;
let v1: Tokenizer | undefined;
let v3: Tokenizer | undefined;

export function modelBytes(version: 'v1' | 'v3'): Uint8Array {
  return new Uint8Array(version === 'v1' ? fixtures.FIXTURE_TOKENIZER_V1 : fixtures.FIXTURE_TOKENIZER_V3);
}

/** Tokenizers parsed from mistral-common's tokenizer.model.v1 / .v3, once per test isolate. */
export function referenceTokenizer(version: 'v1' | 'v3'): Tokenizer {
  if (version === 'v1') return (v1 ??= Tokenizer.fromSentencePieceModel(modelBytes('v1')));
  return (v3 ??= Tokenizer.fromSentencePieceModel(modelBytes('v3')));
}

export function publishedVectors(): PublishedVector[] {
  return JSON.parse(fixtures.FIXTURE_PUBLISHED_VECTORS) as PublishedVector[];
}
