// Encoding against independent references: published vectors, tokenizer.model.v1/.v3, and the
// mistral-tokenizer-js encoder (its own BPE implementation) on thousands of varied strings.

import mistralTokenizerJs from 'mistral-tokenizer-js';
import { describe, expect, it } from 'vitest';
import { getDefaultTokenizer } from './default-tokenizer';
import { modelBytes, publishedVectors, randomStrings, referenceTokenizer } from './test-fixtures';
import { Tokenizer } from './tokenizer';

const V3_TEXT_OFFSET = 768; // v3 inserts 768 control/user-defined pieces before the bytes
const STRINGS = randomStrings(3000, 20261127);

describe('Tokenizer against published vectors', () => {
  it('reproduces every published raw-text vector (v1, and v3 where published)', () => {
    const v1 = referenceTokenizer('v1');
    const v3 = referenceTokenizer('v3');
    const raw = publishedVectors().filter((vector) => vector.kind === 'raw');
    expect(raw.length).toBeGreaterThan(10);
    for (const vector of raw) {
      const prefix = vector.bos ? [v1.bosTokenId] : [];
      expect([...prefix, ...v1.encode(vector.text!)], vector.source).toEqual(vector.expected);
      if (vector.v3_expected) expect([...prefix, ...v3.encode(vector.text!)], vector.source).toEqual(vector.v3_expected);
    }
  });

  it('reads the models: sizes, special ids, template versions', () => {
    const v1 = referenceTokenizer('v1');
    const v3 = referenceTokenizer('v3');
    expect([v1.vocabSize, v1.bosTokenId, v1.eosTokenId, v1.unkTokenId, v1.templateVersion]).toEqual([32000, 1, 2, 0, 'v1']);
    expect([v3.vocabSize, v3.bosTokenId, v3.eosTokenId, v3.unkTokenId, v3.templateVersion]).toEqual([32768, 1, 2, 0, 'v3']);
    expect([v3.idToPiece(3), v3.idToPiece(4), v1.idToPiece(13), v1.idToPiece(31759), v1.idToPiece(32000)]).toEqual([
      '[INST]',
      '[/INST]',
      '<0x0A>',
      '\ufeff',
      undefined,
    ]);
  });
});

describe('Tokenizer on varied strings', () => {
  it('the default asset (from mistral-tokenizer-js) encodes exactly like tokenizer.model.v1', () => {
    const asset = getDefaultTokenizer();
    const reference = referenceTokenizer('v1');
    expect(asset.vocabSize).toBe(32000);
    const vectorTexts = publishedVectors().flatMap((vector) =>
      vector.text !== undefined ? [vector.text] : (vector.messages ?? []).map(([, content]) => content),
    );
    for (const text of [...vectorTexts, ...STRINGS]) expect(asset.encode(text), JSON.stringify(text)).toEqual(reference.encode(text));
  });

  it('agrees with an independent encoder (mistral-tokenizer-js) on every string', () => {
    const reference = referenceTokenizer('v1');
    for (const text of STRINGS) {
      expect(reference.encode(text), JSON.stringify(text)).toEqual(mistralTokenizerJs.encode(text, false, true));
    }
  });

  it('v3 text ids are the v1 ids + 768', () => {
    const v1 = referenceTokenizer('v1');
    const v3 = referenceTokenizer('v3');
    for (const text of STRINGS) expect(v3.encode(text), JSON.stringify(text)).toEqual(v1.encode(text).map((id) => id + V3_TEXT_OFFSET));
  });

  it('pre-splitting and the chunk cache change nothing', () => {
    const plain = Tokenizer.fromSentencePieceModel(modelBytes('v1'), { preSplit: false, cacheChunks: false });
    const reference = referenceTokenizer('v1');
    for (const text of STRINGS.slice(0, 600)) expect(reference.encode(text), JSON.stringify(text)).toEqual(plain.encode(text));
  });

  it('decode(encode(text)) == text', () => {
    for (const version of ['v1', 'v3'] as const) {
      const tokenizer = referenceTokenizer(version);
      for (const text of STRINGS) expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    }
  });
});

describe('Tokenizer edge cases', () => {
  const v1 = () => referenceTokenizer('v1');

  it('typed control text never becomes control ids', () => {
    expect(v1().encode('<s>')).toEqual([523, 28713, 28767]);
    for (const text of ['<s>[INST] hi [/INST]</s>', '</s><unk>', '[INST]']) {
      for (const id of v1().encode(text)) expect([0, 1, 2]).not.toContain(id);
      const v3ids = referenceTokenizer('v3').encode(text);
      for (const id of v3ids) expect(id).toBeGreaterThanOrEqual(V3_TEXT_OFFSET);
    }
  });

  it('v3 matches its user-defined pieces as whole symbols, as SentencePiece does', () => {
    const v3 = referenceTokenizer('v3');
    expect(v3.idToPiece(769)).toBe('[REFERENCE_DOC_1]');
    expect(v3.encode('see [REFERENCE_DOC_1]')).toContain(769);
  });

  it('empty text encodes to nothing; whitespace and newlines survive', () => {
    expect(v1().encode('')).toEqual([]);
    expect(v1().decode([])).toBe('');
    for (const text of [' ', '  ', '\n', ' \n ', '\t\t', 'a  b   c']) expect(v1().decode(v1().encode(text))).toBe(text);
  });

  it('replaces lone surrogates with U+FFFD before encoding', () => {
    const lone = 'a\ud83d b \udca9';
    expect(v1().encode(lone)).toEqual(v1().encode('a\ufffd b \ufffd'));
    expect(v1().decode(v1().encode(lone))).toBe('a\ufffd b \ufffd');
  });

  it('decodes control ids to nothing and the unknown id to " ⁇ "', () => {
    expect(v1().decode([1, 22557, 1526, 28808, 2])).toBe('Hello world!');
    expect(v1().decode([0])).toBe(' \u2047 ');
  });

  it('drops the dummy-prefix space only at the start', () => {
    expect(v1().decode([22557])).toBe('Hello');
    expect(v1().decode([28705, 13300])).toBe(' grabbed'); // "▁" + "▁grabbed"
    expect(v1().decode([22557, 1526])).toBe('Hello world');
    expect(v1().decode([13, 1526])).toBe('\n world'); // a byte piece first: nothing to drop later
  });

  it('long inputs without spaces stay exact (heap path, no cache)', () => {
    const text = '你好世界東京🦙'.repeat(400) + 'x'.repeat(3000);
    const plain = Tokenizer.fromSentencePieceModel(modelBytes('v1'), { preSplit: false, cacheChunks: false });
    const ids = v1().encode(text);
    expect(ids).toEqual(plain.encode(text));
    expect(v1().decode(ids)).toBe(text);
  });
});
