// Test-only helpers: tokenizers from the real SentencePiece models (workerd blob bindings) and the published
// vectors, so every tokenizer test file compares against the same independent references.

import { env } from 'cloudflare:test';
import { Tokenizer } from './tokenizer';

interface FixtureEnv {
  FIXTURE_TOKENIZER_V1: ArrayBuffer;
  FIXTURE_TOKENIZER_V3: ArrayBuffer;
  FIXTURE_PUBLISHED_VECTORS: string;
  FIXTURE_TOOL_SAMPLES: string;
}

/** One of mistral-common's function-calling samples: an OpenAI-style request and its v3 prompt ids. */
export interface ToolSample {
  name: string;
  sample: { messages: Record<string, unknown>[]; tools?: Record<string, unknown>[] };
  tokens: { tokens: number[] };
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

export function toolSamples(): ToolSample[] {
  const all = JSON.parse(fixtures.FIXTURE_TOOL_SAMPLES) as Record<string, Omit<ToolSample, 'name'>>;
  return Object.entries(all).map(([name, entry]) => ({ name, ...entry }));
}

const FRAGMENTS = [
  'the',
  'The',
  ' of',
  'and',
  'Hello',
  'world',
  'grabbed',
  'tokenizer',
  'ça',
  'naïve',
  'Straße',
  'über',
  'привет',
  'мир',
  'مرحبا',
  'שלום',
  'नमस्ते',
  '你好',
  '世界',
  '镇',
  '東京',
  'こんにちは',
  '한국어',
  '🦙',
  '👍🏽',
  '👨‍👩‍👧',
  '🇫🇷',
  'Ꙋ',
  '<s>',
  '</s>',
  '<unk>',
  '[INST]',
  '[/INST]',
  '[TOOL_CALLS]',
  '<0x0A>',
  '0',
  '7',
  '42',
  '3.14159',
  '2026',
  '%',
  '$',
  '(',
  ')',
  '{',
  '}',
  '"',
  "'",
  '.',
  ',',
  '!',
  '?',
  ':',
  ';',
  '-',
  '—',
  '…',
  '/',
  '\\',
  '#',
  '@',
  '`',
  '~',
  '|',
  ' ',
  '  ',
  '   ',
  '      ',
  ' '.repeat(17),
  '\n',
  '\n\n',
  '\t',
  '\r\n',
  '\u00a0',
  '\u200b',
  '\u3000',
  '\u0301',
];

/** Deterministic varied strings (no "▁", which SentencePiece reads as a space): words, scripts, emoji, runs. */
export function randomStrings(count: number, seed: number): string[] {
  let state = seed >>> 0;
  const next = () => {
    // xorshift32: fast, deterministic, good enough to mix fragments.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  const strings: string[] = [];
  for (let index = 0; index < count; index++) {
    const parts = 1 + Math.floor(next() * 24);
    let text = '';
    for (let part = 0; part < parts; part++) {
      const roll = next();
      if (roll < 0.75) text += FRAGMENTS[Math.floor(next() * FRAGMENTS.length)];
      else if (roll < 0.9) text += String.fromCharCode(0x20 + Math.floor(next() * 95));
      else if (roll < 0.97) text += String.fromCodePoint(0xa0 + Math.floor(next() * 0x2400));
      else text += String.fromCodePoint(0x1f300 + Math.floor(next() * 0x300));
    }
    strings.push(text.replaceAll('\u2581', ' '));
  }
  return strings;
}
