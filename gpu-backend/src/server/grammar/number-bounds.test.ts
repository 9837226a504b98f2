// Numbers under a grammar stay finite and integers safe: digit and exponent runs end where number-bounds.ts
// says, on the real v1 vocabulary, and every number the grammar accepts parses to a finite JSON.parse value.

import { describe, expect, it } from 'vitest';
import type { GrammarSpec } from '../../../../shared/protocol';
import { grammarSourceOf } from './grammar-source';
import { GrammarState } from './grammar-state';
import { boundNumbers, MAX_EXPONENT_DIGITS, MAX_FRACTION_DIGITS, MAX_INTEGER_DIGITS } from './number-bounds';
import { feedText, fixtureCompilers, fixtureVocabulary } from './test-vocabularies';

const V1 = fixtureVocabulary('v1');

async function accepts(schema: Record<string, unknown>, text: string): Promise<boolean> {
  const compilers = await fixtureCompilers('v1');
  const built = grammarSourceOf({ type: 'json_schema', schema } as GrammarSpec);
  if (!built.ok) throw new Error(built.message);
  const state = await GrammarState.create(compilers.xgrammar, await compilers.compile(built.source), built.source, null, V1.vocabSize);
  try {
    await feedText(state, text, V1.pieces);
    // The whole text must be a complete value: EOS allowed next.
    const mask = (await state.mask())!;
    return ((mask[V1.eosTokenId >> 5] >>> (V1.eosTokenId & 31)) & 1) === 1;
  } catch {
    return false;
  } finally {
    state.dispose();
  }
}

const digits = (count: number) => '9'.repeat(count);

describe('number bounds', () => {
  it.each([
    [{ type: 'integer' }, digits(MAX_INTEGER_DIGITS), true],
    [{ type: 'integer' }, `-${digits(MAX_INTEGER_DIGITS)}`, true],
    [{ type: 'integer' }, digits(MAX_INTEGER_DIGITS + 1), false],
    [{ type: 'integer', minimum: 0 }, digits(MAX_INTEGER_DIGITS + 1), false],
    [{ type: 'integer', minimum: 1 }, digits(MAX_INTEGER_DIGITS), true],
    [{ type: 'number' }, `${digits(MAX_INTEGER_DIGITS)}.${digits(MAX_FRACTION_DIGITS)}e+${digits(MAX_EXPONENT_DIGITS)}`, true],
    [{ type: 'number' }, `1.${digits(MAX_FRACTION_DIGITS + 1)}`, false],
    [{ type: 'number' }, `1e${digits(MAX_EXPONENT_DIGITS + 1)}`, false],
    [{ type: 'number' }, `${digits(MAX_INTEGER_DIGITS + 1)}`, false],
    [{ type: 'object', properties: { n: { type: 'number' } }, required: ['n'] }, `{"n": 6E+${digits(MAX_EXPONENT_DIGITS + 1)}}`, false],
    [{ type: 'object', properties: { n: { type: 'number' } }, required: ['n'] }, '{"n": -6E+80}', true],
  ])('%j %s accepted: %s', async (schema, text, expected) => {
    expect(await accepts(schema, text)).toBe(expected);
    if (expected) {
      const value = JSON.parse(text) as unknown;
      const number = typeof value === 'number' ? value : (value as { n: number }).n;
      expect(Number.isFinite(number)).toBe(true);
      if (schema.type === 'integer') expect(Number.isSafeInteger(number)).toBe(true);
    }
  });

  it('leaves no unbounded digit run in the EBNF, and refuses an EBNF whose number rules changed shape', () => {
    const ebnf = 'basic_number ::= ((a b c d))\nd ::= ("" | ([eE] s e))\ne ::= (([0-9] e) | ([0-9]))\nf ::= (([0-9] f) | ([0-9]))\ng ::= [1-9] [0-9]*';
    const bounded = boundNumbers(ebnf);
    expect(bounded).toContain(`e ::= [0-9]{1,${MAX_EXPONENT_DIGITS}}`);
    expect(bounded).toContain(`f ::= [0-9]{1,${MAX_FRACTION_DIGITS}}`);
    expect(bounded).toContain(`g ::= [1-9] [0-9]{0,${MAX_INTEGER_DIGITS - 1}}`);
    expect(() => boundNumbers('basic_number ::= (("0"))')).toThrow('changed shape');
  });
});
