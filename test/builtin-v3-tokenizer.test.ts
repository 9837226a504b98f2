// The built-in v3 tokenizer (npm's v1 vocabulary + v3's reserved pieces, `npm start -- --model builtin-v3`)
// against the real thing: mistral-common's tokenizer.model.v3 and its function-calling samples' prompt ids.

import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildTokenizerAsset, resolveSource } from '../edge/scripts/build-tokenizer.ts';
import { type ChatMessage, encodeChat } from '../edge/src/tokenizer/chat-template.ts';
import { Tokenizer } from '../edge/src/tokenizer/tokenizer.ts';
import type { TokenizerAsset } from '../edge/src/tokenizer/tokenizer-asset.ts';
import { toolControlIds } from '../edge/src/tools/tool-prompt.ts';
import { planTools } from '../edge/src/tools/tool-request.ts';
import { toolsSchema } from '../edge/src/tools/tool-request-schemas.ts';
import { readSentencePieceModel } from '../shared/sentencepiece-model.ts';
import { V3_ID_SHIFT, v3VocabularyFromV1 } from '../shared/v3-vocabulary-from-v1.ts';

const FIXTURES = join(process.env.FIXTURES_DIR ?? resolve(process.cwd(), '../shared/fixtures'), 'tokenizer');
const realV3Bytes = () => new Uint8Array(readFileSync(join(FIXTURES, 'mistral_instruct_tokenizer_240323.model.v3')));

interface WireMessage {
  role: ChatMessage['role'];
  content?: string | null;
  tool_calls?: { id: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

interface ToolSample {
  name: string;
  sample: { messages: WireMessage[]; tools?: unknown[] };
  tokenIds: number[];
}

/** The samples' OpenAI-shaped messages as the template takes them (the edge's own mapping needs the worker's types). */
function chatMessage(message: WireMessage): ChatMessage {
  return {
    role: message.role,
    content: message.content ?? '',
    ...(message.tool_calls
      ? { toolCalls: message.tool_calls.map((call) => ({ id: call.id, name: call.function.name, arguments: call.function.arguments })) }
      : {}),
    ...(message.tool_call_id !== undefined ? { toolCallId: message.tool_call_id } : {}),
  };
}

function toolSamples(): ToolSample[] {
  const dir = join(FIXTURES, 'tool-samples');
  const read = (name: string, file: string) => JSON.parse(readFileSync(join(dir, name, file), 'utf8'));
  return readdirSync(dir)
    .sort()
    .map((name) => ({ name, sample: read(name, 'sample.json'), tokenIds: read(name, 'tokens_v3.json').tokens }));
}

/** Every message text of the samples, the published raw vectors and a few edge cases (typed control pieces too). */
function texts(): string[] {
  const vectors = JSON.parse(readFileSync(join(FIXTURES, 'published-vectors.json'), 'utf8')) as { text?: string }[];
  const fromSamples = toolSamples().flatMap(({ sample }) => sample.messages.map((m) => (typeof m.content === 'string' ? m.content : '')));
  const edgeCases = [
    '<s>[INST] typed [/INST]</s>',
    '[TOOL_CALLS] [{"name": "f"}]',
    '[REFERENCE_DOC_3] cited',
    '  two  spaces',
    '镇🦙Ꙋ\n\ttab',
    `${' '.repeat(40)}x`,
  ];
  return [...vectors.flatMap((v) => (v.text ? [v.text] : [])), ...fromSamples, ...edgeCases].filter((text) => text.length > 0);
}

let asset: TokenizerAsset;
let builtin: Tokenizer;
let real: Tokenizer;

beforeAll(async () => {
  asset = await buildTokenizerAsset(resolveSource(undefined, 'v3'));
  builtin = Tokenizer.fromAsset(asset);
  real = Tokenizer.fromSentencePieceModel(realV3Bytes());
});

describe('built-in v3 tokenizer', () => {
  it("has tokenizer.model.v3's pieces, piece types and special ids", () => {
    const reference = readSentencePieceModel(realV3Bytes());
    expect(asset.templateVersion).toBe('v3');
    expect(asset.pieces).toEqual(reference.pieces);
    expect(asset.types).toEqual(reference.types);
    expect([asset.bosTokenId, asset.eosTokenId, asset.unkTokenId]).toEqual([reference.bosTokenId, reference.eosTokenId, reference.unkTokenId]);
    expect(toolControlIds(builtin)).toEqual({ toolCalls: 5, availableTools: 6, endAvailableTools: 7, toolResults: 8, endToolResults: 9 });
  });

  it('encodes text as tokenizer.model.v3 does, which is v1 + 768', () => {
    const v1 = Tokenizer.fromSentencePieceModel(new Uint8Array(readFileSync(join(FIXTURES, 'tokenizer.model.v1'))));
    const all = texts();
    expect(all.length).toBeGreaterThan(30);
    for (const text of all) {
      const expected = real.encode(text);
      expect(builtin.encode(text), JSON.stringify(text)).toEqual(expected);
      if (!text.includes('[REFERENCE_DOC_')) expect(v1.encode(text).map((id) => (id < 3 ? id : id + V3_ID_SHIFT))).toEqual(expected);
    }
  });

  it("writes mistral-common's function-calling samples with their published ids", () => {
    const samples = toolSamples();
    expect(samples).toHaveLength(6);
    for (const { name, sample, tokenIds } of samples) {
      const messages = sample.messages.map(chatMessage);
      const { tools } = planTools({ tools: toolsSchema.parse(sample.tools) }, builtin);
      expect(encodeChat(builtin, messages, { tools }).tokenIds, name).toEqual(tokenIds);
    }
  });

  it('refuses a table that does not start with <unk>, <s>, </s>', () => {
    expect(() => v3VocabularyFromV1({ pieces: ['<s>', '<unk>', '</s>'], types: [3, 2, 3] })).toThrow(/ids 0-2/);
  });
});
