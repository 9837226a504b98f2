// The EBNF rewrites that work around XGrammar 0.1.27: non-ASCII enum values survive its print -> parse round
// trip (its parser reads `\x` greedily), and enum alternatives that share a head match only themselves.

import { describe, expect, it } from 'vitest';
import { grammarSourceOf } from './grammar-source';
import { GrammarState } from './grammar-state';
import { reparsableEscapes } from './ebnf-escapes';
import { factorLiteralAlternations } from './literal-trie';
import { feedText, fixtureCompilers, fixtureVocabulary, isAllowed } from './test-vocabularies';

const V1 = fixtureVocabulary('v1');

async function accepts(values: unknown[], text: string): Promise<boolean> {
  const compilers = await fixtureCompilers('v1');
  const built = grammarSourceOf({ type: 'json_schema', schema: { enum: values } });
  if (!built.ok) throw new Error(built.message);
  const state = await GrammarState.create(compilers.xgrammar, await compilers.compile(built.source), built.source, null, V1.vocabSize);
  try {
    await feedText(state, text, V1.pieces);
    return isAllowed((await state.mask())!, V1.eosTokenId);
  } catch {
    return false;
  } finally {
    state.dispose();
  }
}

describe('EBNF escapes', () => {
  it('a value whose non-ASCII character is followed by hex digits matches itself', async () => {
    expect(await accepts(['\u00a0341', 'é0a'], '"\u00a0341"')).toBe(true);
    expect(await accepts(['\u00a0341', 'é0a'], '"é0a"')).toBe(true);
  });

  it('spells printable escapes as characters and control characters as four-digit escapes', () => {
    expect(reparsableEscapes('"\\xa0341" [\\x1f] "\\u0416" "\\U0001f642" "\\\\xa0" "\\x22"')).toBe('"\u00a0341" [\\u001f] "Ж" "🙂" "\\\\xa0" "\\x22"');
  });
});

describe('literal alternations as a trie', () => {
  it('the enum [898, 909, 963, 969] matches its four values and not 903 (XGrammar alone accepted 903)', async () => {
    const values = [898, 909, 963, 969];
    for (const value of values) expect(await accepts(values, String(value))).toBe(true);
    for (const other of ['903', '969 ', '96', '9', '8989']) expect(await accepts(values, other)).toBe(false);
  });

  it('factors only rules made of literal alternatives, keeping every literal', () => {
    expect(factorLiteralAlternations('root ::= (("898") | ("909") | ("963") | ("9"))')).toBe('root ::= ("898" | "9" ("09" | "63" | ""))');
    expect(factorLiteralAlternations('a ::= (("\\"x") | ("\\"y"))')).toBe('a ::= "\\"" ("x" | "y")');
    expect(factorLiteralAlternations('b ::= (("a" "b"))\nc ::= (("a") | (d))')).toBe('b ::= (("a" "b"))\nc ::= (("a") | (d))');
  });
});
