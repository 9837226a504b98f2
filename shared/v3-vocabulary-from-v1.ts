// Mistral's v3 vocabulary (7B v0.3) derived from the v1 one: v3 keeps v1's <unk>, <s>, </s> at ids 0-2, adds
// 768 reserved pieces at ids 3-770 and shifts every other v1 piece up by 768, unchanged. Lets the built-in
// v3 model (`npm start -- --model builtin-v3`) use the v1 vocabulary npm ships, without a v3 download.

import { PIECE_TYPE } from './sentencepiece-model';

/** How far v3 moves every v1 piece after </s>. */
export const V3_ID_SHIFT = 768;
/** v1 ids below this keep their id in v3 (<unk>, <s>, </s>). */
const KEPT_IDS = 3;
/** The named control pieces at ids 3..13; the rest up to id 750 are "[control_N]" (N = id - 2). */
const NAMED_CONTROL = [
  '[INST]',
  '[/INST]',
  '[TOOL_CALLS]',
  '[AVAILABLE_TOOLS]',
  '[/AVAILABLE_TOOLS]',
  '[TOOL_RESULTS]',
  '[/TOOL_RESULTS]',
  '[IMG]',
  '[PREFIX]',
  '[MIDDLE]',
  '[SUFFIX]',
];
const LAST_CONTROL_ID = 750;
/** Ids 751..770 are user-defined "[REFERENCE_DOC_N]" counting down to 0, as in tokenizer.model.v3. */
const LAST_RESERVED_ID = KEPT_IDS + V3_ID_SHIFT - 1;

export interface PieceTable {
  pieces: string[];
  /** PIECE_TYPE values, one per piece. */
  types: number[];
  /** Absent where the caller has no use for them (the backend's grammar vocabulary). */
  scores?: number[];
}

/** The piece and type v3 reserves at `id` (3..770). */
function reservedPiece(id: number): { piece: string; type: number } {
  const named = NAMED_CONTROL[id - KEPT_IDS];
  if (named !== undefined) return { piece: named, type: PIECE_TYPE.control };
  if (id <= LAST_CONTROL_ID) return { piece: `[control_${id - 2}]`, type: PIECE_TYPE.control };
  return { piece: `[REFERENCE_DOC_${LAST_RESERVED_ID - id}]`, type: PIECE_TYPE.userDefined };
}

/**
 * The v3 table for a v1 table (32000 pieces -> 32768), other fields kept. Reserved pieces score 0, as in
 * tokenizer.model.v3: control pieces never merge and user-defined ones match only whole, so the score is inert.
 */
export function v3VocabularyFromV1<T extends PieceTable>(v1: T): T {
  if (v1.pieces[0] !== '<unk>' || v1.pieces[1] !== '<s>' || v1.pieces[2] !== '</s>') {
    throw new Error('v3VocabularyFromV1: ids 0-2 of the v1 vocabulary must be <unk>, <s>, </s>');
  }
  const reserved = Array.from({ length: V3_ID_SHIFT }, (_, offset) => reservedPiece(KEPT_IDS + offset));
  const splice = <V>(values: V[], inserted: V[]) => [...values.slice(0, KEPT_IDS), ...inserted, ...values.slice(KEPT_IDS)];
  const pieces = splice(
    v1.pieces,
    reserved.map((entry) => entry.piece),
  );
  const types = splice(
    v1.types,
    reserved.map((entry) => entry.type),
  );
  const scores = v1.scores && splice(v1.scores, new Array<number>(V3_ID_SHIFT).fill(0));
  return { ...v1, pieces, types, ...(scores ? { scores } : {}) };
}
