// The serialized tokenizer the edge loads (edge/generated/tokenizer.json), its piece types, its validation
// and the template-version rule shared by the SentencePiece parser and the build script.

import { PIECE_TYPE, type SentencePieceModel } from '../../../shared/sentencepiece-model';

export { PIECE_TYPE };

/** The parsed SentencePiece model (pieces, scores, types, special ids) plus what the edge derives from it. */
export interface TokenizerAsset extends SentencePieceModel {
  format: 'mistral-spm/1';
  templateVersion: 'v1' | 'v3';
  /** Where the asset came from (informational; the build script's up-to-date check uses its own stamp). */
  source?: string;
}

const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;

/** v3 (Mistral 7B v0.3) reserves control pieces [INST]=3 and [/INST]=4; anything else uses the v1 template. */
export function detectTemplateVersion(pieces: string[], types: number[]): 'v1' | 'v3' {
  const isControl = (id: number, piece: string) => pieces[id] === piece && types[id] === PIECE_TYPE.control;
  return isControl(3, '[INST]') && isControl(4, '[/INST]') ? 'v3' : 'v1';
}

/** Throws with a message naming the offending field; called once when a Tokenizer is built. */
export function validateTokenizerAsset(asset: TokenizerAsset): void {
  const fail = (field: string, why: string): never => {
    throw new Error(`invalid tokenizer asset: ${field} ${why}`);
  };
  if (asset.format !== 'mistral-spm/1') fail('format', `must be "mistral-spm/1", got ${JSON.stringify(asset.format)}`);
  if (asset.templateVersion !== 'v1' && asset.templateVersion !== 'v3') fail('templateVersion', 'must be v1 or v3');
  const vocabSize = asset.pieces.length;
  if (vocabSize === 0) fail('pieces', 'is empty');
  if (asset.scores.length !== vocabSize) fail('scores', `has ${asset.scores.length} entries for ${vocabSize} pieces`);
  if (asset.types.length !== vocabSize) fail('types', `has ${asset.types.length} entries for ${vocabSize} pieces`);
  // Duplicate pieces are caught where the Tokenizer builds its piece map, not with a second set here.
  for (let id = 0; id < vocabSize; id++) {
    const type = asset.types[id];
    const piece = asset.pieces[id];
    if (type < 1 || type > 6) fail(`types[${id}]`, `is ${type}, not a SentencePiece piece type`);
    if (type === PIECE_TYPE.unused) fail(`types[${id}]`, 'is UNUSED, which this encoder does not support');
    if (type === PIECE_TYPE.byte && !BYTE_PIECE.test(piece)) fail(`pieces[${id}]`, `is a byte piece but reads ${piece}`);
    if (typeof piece !== 'string' || piece.length === 0) fail(`pieces[${id}]`, 'is empty');
    if (!Number.isFinite(asset.scores[id])) fail(`scores[${id}]`, 'is not a finite number');
  }
  const checkId = (field: 'bosTokenId' | 'eosTokenId' | 'unkTokenId', type: number) => {
    const id = asset[field];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize || asset.types[id] !== type) {
      fail(field, `(${id}) must name a piece of type ${type}`);
    }
  };
  checkId('bosTokenId', PIECE_TYPE.control);
  checkId('eosTokenId', PIECE_TYPE.control);
  checkId('unkTokenId', PIECE_TYPE.unknown);
  if (detectTemplateVersion(asset.pieces, asset.types) !== asset.templateVersion) {
    fail('templateVersion', `does not match the vocabulary's control pieces`);
  }
}
