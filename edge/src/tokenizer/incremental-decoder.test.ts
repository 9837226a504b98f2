// Streaming detokenization: every way of splitting the ids gives decode(allIds), and nothing half-made escapes.

import { describe, expect, it } from 'vitest';
import { IncrementalDecoder } from './incremental-decoder';
import { randomStrings, referenceTokenizer } from './test-fixtures';

/** Pushes ids in groups of the given sizes (cycled); returns each push's text and the flush. */
function stream(tokenIds: number[], groupSizes: number[] = [1]): string[] {
  const decoder = new IncrementalDecoder(referenceTokenizer('v1'));
  const outputs: string[] = [];
  for (let start = 0, group = 0; start < tokenIds.length; group++) {
    const size = groupSizes[group % groupSizes.length];
    outputs.push(decoder.push(tokenIds.slice(start, start + size)));
    start += size;
  }
  outputs.push(decoder.flush());
  return outputs;
}

describe('IncrementalDecoder', () => {
  it('holds byte-fallback pieces until the emoji is complete', () => {
    // "🦙" is four byte pieces (published vector): [▁, F0, 9F, A6, 99] as ids [28705, 243, 162, 169, 156].
    expect(stream([28705, 243, 162, 169, 156])).toEqual(['', '', '', '', '🦙', '']);
    // Two emoji and a 3-byte character straddling pushes of 3 ids.
    const ids = referenceTokenizer('v1').encode('🦙Ꙋ🦙');
    const outputs = stream(ids, [3]);
    expect(outputs.join('')).toBe('🦙Ꙋ🦙');
    for (const text of outputs) expect(text).not.toContain('\ufffd');
  });

  it('emits CJK that is split over tokens only when whole', () => {
    const text = '镇东京的🦙是世界上最好的';
    const ids = referenceTokenizer('v1').encode(text);
    const outputs = stream(ids);
    expect(outputs.join('')).toBe(text);
    for (const piece of outputs) expect(piece).not.toContain('\ufffd');
  });

  it('drops only the leading space of the sequence, never one in the middle', () => {
    expect(stream([22557, 1526])).toEqual(['Hello', ' world', '']);
    expect(stream([28705, 13300])).toEqual(['', ' grabbed', '']); // "▁" then "▁grabbed": the first "▁" is the dummy prefix
    expect(stream([1, 22557])).toEqual(['', 'Hello', '']); // BOS is invisible and does not end the start
    expect(stream([13, 1526])).toEqual(['\n', ' world', '']);
  });

  it('turns bytes that never complete a character into U+FFFD, one per byte', () => {
    expect(stream([243, 162])).toEqual(['', '', '\ufffd\ufffd']); // truncated 4-byte sequence at the end
    expect(stream([243, 22557])).toEqual(['', '\ufffd Hello', '']); // interrupted by "▁Hello": text exists, so its space stays
    expect(stream([131, 28705])).toEqual(['\ufffd', ' ', '']); // a lone continuation byte is invalid at once
  });

  it('every split of the stream gives decode(allIds), which is the original text', () => {
    const tokenizer = referenceTokenizer('v1');
    for (const [index, text] of randomStrings(400, 99).entries()) {
      const ids = tokenizer.encode(text);
      const outputs = stream(ids, [1 + (index % 5), 2, 1]);
      expect(outputs.join(''), JSON.stringify(text)).toBe(text);
      expect(tokenizer.decode(ids)).toBe(text);
    }
  });

  it('rejects ids outside the vocabulary', () => {
    const decoder = new IncrementalDecoder(referenceTokenizer('v1'));
    expect(() => decoder.push([32000])).toThrow(RangeError);
    expect(() => decoder.push([-1])).toThrow(RangeError);
  });
});
