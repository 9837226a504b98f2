// Reads a SentencePiece `tokenizer.model` (a ModelProto protobuf) without dependencies: pieces, scores, types and
// the special ids. Pure TypeScript, shared by the edge (its tokenizer) and the backend (the grammar vocabulary).
// Only the Mistral shape is accepted (BPE, byte fallback, identity normalizer with a dummy prefix); anything
// else would tokenize differently from SentencePiece, so it is rejected with the setting that differs.

/** SentencePiece piece types (sentencepiece_model.proto). */
export const PIECE_TYPE = {
  normal: 1,
  unknown: 2,
  control: 3,
  userDefined: 4,
  unused: 5,
  byte: 6,
} as const;

export interface SentencePieceModel {
  pieces: string[];
  scores: number[];
  /** PIECE_TYPE values, one per piece. */
  types: number[];
  bosTokenId: number;
  eosTokenId: number;
  unkTokenId: number;
}

// Field numbers from sentencepiece_model.proto.
const MODEL_PIECES = 1;
const MODEL_TRAINER_SPEC = 2;
const MODEL_NORMALIZER_SPEC = 3;
const MODEL_DENORMALIZER_SPEC = 5;
const PIECE_TEXT = 1;
const PIECE_SCORE = 2;
const PIECE_TYPE_FIELD = 3;
const TRAINER_MODEL_TYPE = 3;
const TRAINER_TREAT_WHITESPACE_AS_SUFFIX = 24;
const TRAINER_BYTE_FALLBACK = 35;
const TRAINER_UNK_ID = 40;
const TRAINER_BOS_ID = 41;
const TRAINER_EOS_ID = 42;
const NORMALIZER_NAME = 1;
const NORMALIZER_CHARSMAP = 2;
const NORMALIZER_ADD_DUMMY_PREFIX = 3;
const NORMALIZER_REMOVE_EXTRA_WHITESPACES = 4;
const NORMALIZER_ESCAPE_WHITESPACES = 5;
const MODEL_TYPE_BPE = 2;
const MODEL_TYPE_NAMES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

type FieldValue = number | Uint8Array;
type Fields = Map<number, FieldValue[]>;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // keeps the U+FEFF piece (v1 id 31759)

/** Splits one protobuf message into field number -> values (varints as int32/uint32 low bits, floats decoded). */
function readFields(bytes: Uint8Array): Fields {
  const fields: Fields = new Map();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let position = 0;
  const readVarint = (): number => {
    // Only the low 32 bits matter for the fields read here (ids, enums, bools, lengths); negative int32 values
    // are sign-extended to 10 bytes on the wire, and `| 0` on the low bits restores them.
    let low = 0;
    let shift = 0;
    for (;;) {
      if (position >= bytes.length) throw new Error('truncated varint');
      const byte = bytes[position++];
      if (shift < 32) low |= (byte & 0x7f) << shift;
      shift += 7;
      if ((byte & 0x80) === 0) return low;
      if (shift > 70) throw new Error('varint too long');
    }
  };
  while (position < bytes.length) {
    const tag = readVarint() >>> 0;
    const field = tag >>> 3;
    const wireType = tag & 7;
    let value: FieldValue;
    if (wireType === 0) value = readVarint();
    else if (wireType === 1) {
      position += 8;
      continue;
    } else if (wireType === 2) {
      const length = readVarint() >>> 0;
      if (position + length > bytes.length) throw new Error(`field ${field} runs past the end`);
      value = bytes.subarray(position, position + length);
      position += length;
    } else if (wireType === 5) {
      if (position + 4 > bytes.length) throw new Error(`field ${field} runs past the end`);
      value = view.getFloat32(position, true);
      position += 4;
    } else throw new Error(`unsupported protobuf wire type ${wireType} (field ${field})`);
    const list = fields.get(field);
    if (list) list.push(value);
    else fields.set(field, [value]);
  }
  if (position !== bytes.length) throw new Error('message runs past the end');
  return fields;
}

function scalar(fields: Fields, field: number, fallback: number): number {
  const values = fields.get(field);
  const last = values?.[values.length - 1];
  return typeof last === 'number' ? last : fallback;
}

function message(fields: Fields, field: number): Fields {
  const values = fields.get(field);
  const last = values?.[values.length - 1];
  return last instanceof Uint8Array ? readFields(last) : new Map();
}

function text(fields: Fields, field: number): string {
  const values = fields.get(field);
  const last = values?.[values.length - 1];
  return last instanceof Uint8Array ? utf8.decode(last) : '';
}

function bytesLength(fields: Fields, field: number): number {
  const values = fields.get(field);
  const last = values?.[values.length - 1];
  return last instanceof Uint8Array ? last.length : 0;
}

/** Parses `tokenizer.model` bytes; throws `unsupported SentencePiece model: <setting> ...` for other shapes. */
export function readSentencePieceModel(bytes: Uint8Array): SentencePieceModel {
  let model: Fields;
  try {
    model = readFields(bytes);
  } catch (error) {
    throw new Error(`not a SentencePiece model (protobuf): ${(error as Error).message}`);
  }
  const unsupported = (why: string): never => {
    throw new Error(`unsupported SentencePiece model: ${why}`);
  };
  const trainer = message(model, MODEL_TRAINER_SPEC);
  const normalizer = message(model, MODEL_NORMALIZER_SPEC);
  const modelType = scalar(trainer, TRAINER_MODEL_TYPE, 1);
  if (modelType !== MODEL_TYPE_BPE) unsupported(`trainer_spec.model_type is ${MODEL_TYPE_NAMES[modelType] ?? modelType}, need BPE`);
  if (scalar(trainer, TRAINER_BYTE_FALLBACK, 0) !== 1) unsupported('trainer_spec.byte_fallback must be true');
  if (scalar(trainer, TRAINER_TREAT_WHITESPACE_AS_SUFFIX, 0) !== 0) unsupported('trainer_spec.treat_whitespace_as_suffix must be false');
  if (scalar(normalizer, NORMALIZER_ADD_DUMMY_PREFIX, 1) !== 1) unsupported('normalizer_spec.add_dummy_prefix must be true');
  if (scalar(normalizer, NORMALIZER_REMOVE_EXTRA_WHITESPACES, 1) !== 0) unsupported('normalizer_spec.remove_extra_whitespaces must be false');
  if (scalar(normalizer, NORMALIZER_ESCAPE_WHITESPACES, 1) !== 1) unsupported('normalizer_spec.escape_whitespaces must be true');
  if (bytesLength(normalizer, NORMALIZER_CHARSMAP) !== 0) {
    unsupported(`normalizer_spec "${text(normalizer, NORMALIZER_NAME)}" has normalization rules (need identity)`);
  }
  if (bytesLength(message(model, MODEL_DENORMALIZER_SPEC), NORMALIZER_CHARSMAP) !== 0) unsupported('denormalizer_spec has rules');

  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  for (const entry of model.get(MODEL_PIECES) ?? []) {
    if (!(entry instanceof Uint8Array)) unsupported('pieces entry is not a message');
    const piece = readFields(entry as Uint8Array);
    pieces.push(text(piece, PIECE_TEXT));
    scores.push(scalar(piece, PIECE_SCORE, 0));
    types.push(scalar(piece, PIECE_TYPE_FIELD, PIECE_TYPE.normal));
  }
  if (pieces.length === 0) unsupported('it has no pieces');
  return {
    pieces,
    scores,
    types,
    bosTokenId: scalar(trainer, TRAINER_BOS_ID, 1),
    eosTokenId: scalar(trainer, TRAINER_EOS_ID, 2),
    unkTokenId: scalar(trainer, TRAINER_UNK_ID, 0),
  };
}
