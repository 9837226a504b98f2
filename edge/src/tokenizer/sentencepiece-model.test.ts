// The protobuf reader on the real model and on small hand-built models, including every rejected setting.

import { describe, expect, it } from 'vitest';
import { parseSentencePieceModel } from './sentencepiece-model';
import { modelBytes } from './test-fixtures';
import { PIECE_TYPE } from './tokenizer-asset';

// A minimal protobuf writer, independent of the parser, to build small models field by field.
function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value >>> 0;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return bytes;
}
const tag = (field: number, wireType: number) => varint((field << 3) | wireType);
const intField = (field: number, value: number) => [...tag(field, 0), ...varint(value)];
const bytesField = (field: number, bytes: number[]) => [...tag(field, 2), ...varint(bytes.length), ...bytes];
const textField = (field: number, text: string) => bytesField(field, [...new TextEncoder().encode(text)]);
const floatField = (field: number, value: number) => {
  const buffer = new DataView(new ArrayBuffer(4));
  buffer.setFloat32(0, value, true);
  return [...tag(field, 5), ...new Uint8Array(buffer.buffer)];
};

function piece(text: string, score: number, type?: number): number[] {
  return bytesField(1, [...textField(1, text), ...floatField(2, score), ...(type ? intField(3, type) : [])]);
}

function model(trainer: number[], normalizer: number[]): Uint8Array {
  const pieces = [piece('<unk>', 0, 2), piece('<s>', 0, 3), piece('</s>', 0, 3)];
  for (let byte = 0; byte < 256; byte++) pieces.push(piece(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`, 0, 6));
  pieces.push(piece('\u2581a', -1), piece('a', -2));
  return new Uint8Array([...pieces.flat(), ...bytesField(2, trainer), ...bytesField(3, normalizer)]);
}

const BPE_TRAINER = [...intField(3, 2), ...intField(35, 1)];
const MISTRAL_NORMALIZER = [...textField(1, 'identity'), ...intField(3, 1), ...intField(4, 0)];

describe('parseSentencePieceModel', () => {
  it('reads the real v1 model', () => {
    const asset = parseSentencePieceModel(modelBytes('v1'));
    expect(asset.pieces.length).toBe(32000);
    expect([asset.pieces[259], asset.scores[259], asset.types[259]]).toEqual(['\u2581\u2581', -1e9, PIECE_TYPE.normal]);
    expect([asset.pieces[261], asset.scores[261]]).toEqual(['\u2581t', -2]);
    expect(asset.types.filter((type) => type === PIECE_TYPE.byte).length).toBe(256);
  });

  it('reads a minimal Mistral-shaped model', () => {
    const asset = parseSentencePieceModel(model(BPE_TRAINER, MISTRAL_NORMALIZER));
    expect(asset.pieces.slice(-2)).toEqual(['\u2581a', 'a']);
    expect(asset.scores.slice(-2)).toEqual([-1, -2]);
    expect([asset.bosTokenId, asset.eosTokenId, asset.unkTokenId, asset.templateVersion]).toEqual([1, 2, 0, 'v1']);
  });

  it('rejects models that would tokenize differently, naming the setting', () => {
    const cases: [number[], number[], RegExp][] = [
      [[...intField(35, 1)], MISTRAL_NORMALIZER, /model_type is UNIGRAM, need BPE/],
      [[...intField(3, 2)], MISTRAL_NORMALIZER, /byte_fallback/],
      [BPE_TRAINER, [...intField(4, 0), ...intField(3, 0)], /add_dummy_prefix/],
      [BPE_TRAINER, [...textField(1, 'identity')], /remove_extra_whitespaces/],
      [BPE_TRAINER, [...textField(1, 'nmt_nfkc'), ...bytesField(2, [1, 2, 3]), ...intField(4, 0)], /nmt_nfkc.*normalization rules/],
    ];
    for (const [trainer, normalizer, message] of cases) expect(() => parseSentencePieceModel(model(trainer, normalizer))).toThrow(message);
  });

  it('rejects bytes that are not a model', () => {
    expect(() => parseSentencePieceModel(new TextEncoder().encode('{"model": "json"}'))).toThrow(/SentencePiece/);
    expect(() => parseSentencePieceModel(modelBytes('v1').slice(0, 1000))).toThrow(/not a SentencePiece model/);
  });
});
