// Reads a SentencePiece `tokenizer.model` into a TokenizerAsset: the protobuf reader lives in shared/ (the backend
// reads the same files for its grammar vocabulary); this adds the edge's template version and source.

import { readSentencePieceModel } from '../../../shared/sentencepiece-model';
import { detectTemplateVersion, type TokenizerAsset } from './tokenizer-asset';

/** Parses `tokenizer.model` bytes; throws `unsupported SentencePiece model: <setting> ...` for other shapes. */
export function parseSentencePieceModel(bytes: Uint8Array): TokenizerAsset {
  const model = readSentencePieceModel(bytes);
  return { format: 'mistral-spm/1', templateVersion: detectTemplateVersion(model.pieces, model.types), ...model, source: 'sentencepiece-model' };
}
