// Grammar states on the real Mistral vocabularies: byte-fallback pieces and the "▁" space convention as
// XGrammar sees them, control ids never read as text, the [TOOL_CALLS] framing, independent matchers.

import { describe, expect, it } from 'vitest';
import type { GrammarSpec } from '../../../../shared/protocol';
import { PIECE_TYPE } from '../../../../shared/sentencepiece-model';
import { grammarSourceOf, type GrammarSource } from './grammar-source';
import { GrammarState, applyMask } from './grammar-state';
import { allowedIds, decodeIds, feedText, fixtureCompilers, fixtureVocabulary, isAllowed } from './test-vocabularies';

const V1 = fixtureVocabulary('v1');
const V3 = fixtureVocabulary('v3');
const byteId = (vocabulary: { pieces: string[] }, byte: number) => vocabulary.pieces.indexOf(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);

function sourceOf(spec: Parameters<typeof grammarSourceOf>[0]): GrammarSource {
  const built = grammarSourceOf(spec);
  if (!built.ok) throw new Error(built.message);
  return built.source;
}

async function stateFor(version: 'v1' | 'v3', spec: Parameters<typeof grammarSourceOf>[0]): Promise<GrammarState> {
  const compilers = await fixtureCompilers(version);
  const source = sourceOf(spec);
  const vocabulary = version === 'v1' ? V1 : V3;
  return GrammarState.create(compilers.xgrammar, await compilers.compile(source), source, vocabulary.toolCallsTokenId, vocabulary.vocabSize);
}

describe('grammar masks on the Mistral v1 vocabulary', () => {
  it('allows UTF-8 byte pieces and "▁" spaces exactly where the schema does, never a raw newline', async () => {
    const state = await stateFor('v1', { type: 'json_schema', schema: { type: 'object', properties: { s: { enum: ['é', 'a b'] } }, required: ['s'] } });
    await feedText(state, '{"s": "', V1.pieces);
    let mask = (await state.mask())!;
    expect(isAllowed(mask, byteId(V1, 0xc3))).toBe(true); // first byte of é (C3 A9)
    expect(isAllowed(mask, byteId(V1, 0xc4))).toBe(false);
    expect(isAllowed(mask, byteId(V1, 0x0a))).toBe(false);
    expect(isAllowed(mask, V1.pieces.indexOf('a'))).toBe(true);
    state.accept(V1.pieces.indexOf('a'));
    mask = (await state.mask())!;
    expect(isAllowed(mask, V1.pieces.indexOf('▁b'))).toBe(true);
    expect(isAllowed(mask, V1.pieces.indexOf('b'))).toBe(false);
    expect(isAllowed(mask, V1.eosTokenId)).toBe(false);
    const rest = await feedText(state, ' b"}', V1.pieces);
    mask = (await state.mask())!;
    expect(allowedIds(mask, V1.vocabSize)).toEqual([V1.eosTokenId]); // complete: only EOS
    state.accept(V1.eosTokenId);
    expect(state.terminated).toBe(true);
    expect(decodeIds(rest, 'v1')).toBe(' b"}');
    state.dispose();
  });

  it('a JSON object starts with "{", not "▁{" (no free whitespace), and the first mask has no EOS', async () => {
    const state = await stateFor('v1', { type: 'json_object' });
    const mask = (await state.mask())!;
    const allowed = allowedIds(mask, V1.vocabSize).map((id) => decodeIds([id], 'v1'));
    expect(allowed.length).toBeGreaterThan(0);
    expect(allowed.every((text) => text.startsWith('{'))).toBe(true);
    state.dispose();
  });

  it('applyMask leaves allowed logits and sets the rest to -Infinity', () => {
    const logits = Float32Array.from({ length: 40 }, (_, i) => i / 10);
    const mask = new Int32Array(2);
    mask[0] = 1 << 3;
    mask[1] = (1 << 2) | (1 << 7); // ids 34 and 39
    const out = applyMask(logits, mask, new Float32Array(40));
    expect([...out].map((value, id) => (value === -Infinity ? null : id)).filter((id) => id !== null)).toEqual([3, 34, 39]);
    expect(out[34]).toBeCloseTo(3.4);
  });
});

describe('Mistral v3: control ids and tool calls', () => {
  it('no control id is ever allowed inside a JSON string', async () => {
    const state = await stateFor('v3', {
      type: 'json_schema',
      schema: { type: 'object', properties: { text: { type: 'string', maxLength: 20 } }, required: ['text'] },
    });
    await feedText(state, '{"text": "', V3.pieces);
    const allowed = allowedIds((await state.mask())!, V3.vocabSize);
    expect(allowed.length).toBeGreaterThan(1000);
    expect(allowed.filter((id) => V3.types[id] === PIECE_TYPE.control || V3.types[id] === PIECE_TYPE.unknown)).toEqual([]);
    expect(allowed).toContain(V3.pieces.indexOf('[REFERENCE_DOC_0]')); // user-defined pieces are text
    state.dispose();
  });

  it("'required' forces [TOOL_CALLS] (found by its piece) then ' [' + a call of a listed tool, then EOS", async () => {
    expect(V3.toolCallsTokenId).toBe(V3.pieces.indexOf('[TOOL_CALLS]'));
    const tools = [
      { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'] } },
      { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['a'] } },
    ];
    const state = await stateFor('v3', { type: 'tool_calls', mode: 'required', tools, parallel: false });
    expect(allowedIds((await state.mask())!, V3.vocabSize)).toEqual([V3.toolCallsTokenId]);
    state.accept(V3.toolCallsTokenId!);
    const mask = (await state.mask())!;
    expect(isAllowed(mask, V3.pieces.indexOf('▁['))).toBe(true);
    expect(isAllowed(mask, V3.pieces.indexOf('['))).toBe(false);
    await feedText(state, ' [{"name": "add", "arguments": {"a": 7}}]', V3.pieces);
    expect(allowedIds((await state.mask())!, V3.vocabSize)).toEqual([V3.eosTokenId]); // not parallel: one call
    state.accept(V3.eosTokenId);
    expect(state.terminated).toBe(true);
    const other = await stateFor('v3', { type: 'tool_calls', mode: 'required', tools, parallel: false });
    other.accept(V3.toolCallsTokenId!);
    await expect(feedText(other, ' [{"name": "remove"', V3.pieces)).rejects.toThrow('no allowed piece');
    other.dispose();
    state.dispose();
  });

  it("'auto' leaves the output free until [TOOL_CALLS]; choices' matchers are independent", async () => {
    const spec: GrammarSpec = { type: 'tool_calls', mode: 'auto', tools: [{ name: 'f', parameters: { type: 'object', properties: {} } }], parallel: true };
    const [first, second] = [await stateFor('v3', spec), await stateFor('v3', spec)];
    expect(await first.mask()).toBeNull();
    first.accept(V3.pieces.indexOf('▁Hello'));
    expect(await first.mask()).toBeNull();
    first.accept(V3.toolCallsTokenId!);
    await feedText(first, ' [{"name": "f", "arguments": {}}', V3.pieces);
    const allowed = allowedIds((await first.mask())!, V3.vocabSize).map((id) => V3.pieces[id]);
    expect(allowed).toContain(']');
    expect(allowed).toContain(','); // parallel: another call may follow
    expect(await second.mask()).toBeNull(); // untouched by its sibling
    second.accept(V3.toolCallsTokenId!);
    const opening = allowedIds((await second.mask())!, V3.vocabSize).map((id) => decodeIds([id], 'v3'));
    expect(opening).toContain(' [');
    expect(opening.every((text) => ' [{"'.startsWith(text) || text.startsWith(' [{"'))).toBe(true);
    first.dispose();
    second.dispose();
  });
});
