import { describe, expect, it } from 'vitest';
import { publishedVectors, referenceTokenizer } from './test-fixtures';

describe('Tokenizer (SentencePiece models)', () => {
  it('reproduces every published raw-text vector (v1, and v3 where published)', () => {
    const v1 = referenceTokenizer('v1');
    const v3 = referenceTokenizer('v3');
    const raw = publishedVectors().filter((vector) => vector.kind === 'raw');
    expect(raw.length).toBeGreaterThan(10);
    for (const vector of raw) {
      const prefix = vector.bos ? [1] : [];
      expect([...prefix, ...v1.encode(vector.text!)], vector.source).toEqual(vector.expected);
      if (vector.v3_expected) expect([...prefix, ...v3.encode(vector.text!)], vector.source).toEqual(vector.v3_expected);
    }
  });

  it('keeps control-piece text as text', () => {
    expect(referenceTokenizer('v1').encode('<s>')).toEqual([523, 28713, 28767]);
  });
});
