// Mistral's SentencePiece tokenizer (v1 and v3 vocabularies): text -> ids exactly as sentencepiece's BPE
// encode, ids -> text exactly as its decode. Lookup tables are built once per Tokenizer (per isolate).

import { Bpe } from './bpe';
import { IncrementalDecoder } from './incremental-decoder';
import { parseSentencePieceModel } from './sentencepiece-model';
import { PIECE_TYPE, type TokenizerAsset, validateTokenizerAsset } from './tokenizer-asset';

const SPACE_SYMBOL = '\u2581'; // "▁", SentencePiece's escaped space
const SPACE_SYMBOL_UNIT = 0x2581;
const UNKNOWN_SURFACE = ' \u2047 '; // sentencepiece's default unk_surface " ⁇ "
const CACHE_ENTRIES = 16_384;
const CACHE_MAX_CHUNK = 64;
const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

/** Replaces lone surrogates with U+FFFD; native where the runtime has it (workerd and Node 20 do). */
function toWellFormed(text: string): string {
  const native = (String.prototype as { toWellFormed?: () => string }).toWellFormed;
  if (native) return native.call(text);
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

export interface TokenizerOptions {
  /** Split before each "▁" run that follows another character, when exact for the vocabulary. */
  preSplit?: boolean;
  /** Remember the ids of short chunks (words) in a bounded per-tokenizer map. */
  cacheChunks?: boolean;
}

export class Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly unkTokenId: number;
  readonly templateVersion: 'v1' | 'v3';
  /** Decode tables, read by IncrementalDecoder: byte value of <0xXX> pieces (-1 otherwise). */
  readonly byteValues: Int16Array; // [vocab]
  /** Decode tables: text of each piece ("▁" as space; control ''; unknown " ⁇ "). */
  readonly surfaces: string[]; // [vocab]
  /** Decode tables: 1 where a leading "▁" is dropped at the start of a sequence (normal and user-defined). */
  readonly dropsLeadingSpace: Uint8Array; // [vocab]
  private readonly pieces: string[];
  private readonly types: Uint8Array; // [vocab]
  private readonly bpe: Bpe;
  private readonly preSplit: boolean;
  private readonly cacheChunks: boolean;
  private readonly chunkCache = new Map<string, number[]>();
  private hardCharacters: ((codePoint: number) => boolean) | undefined;

  /** `options` exist for tests and benchmarks (both default true; results are identical either way). */
  static fromAsset(asset: TokenizerAsset, options: TokenizerOptions = {}): Tokenizer {
    validateTokenizerAsset(asset);
    return new Tokenizer(asset, options);
  }

  static fromSentencePieceModel(bytes: Uint8Array, options: TokenizerOptions = {}): Tokenizer {
    return Tokenizer.fromAsset(parseSentencePieceModel(bytes), options);
  }

  private constructor(asset: TokenizerAsset, options: TokenizerOptions) {
    const vocabSize = asset.pieces.length;
    this.vocabSize = vocabSize;
    this.bosTokenId = asset.bosTokenId;
    this.eosTokenId = asset.eosTokenId;
    this.unkTokenId = asset.unkTokenId;
    this.templateVersion = asset.templateVersion;
    this.pieces = asset.pieces;
    this.types = Uint8Array.from(asset.types);
    this.byteValues = new Int16Array(vocabSize).fill(-1);
    this.surfaces = new Array<string>(vocabSize);
    this.dropsLeadingSpace = new Uint8Array(vocabSize);
    const pieceToId = new Map<string, number>();
    const byteIds = new Int32Array(256).fill(-1);
    const userDefinedPieces: string[] = [];
    let preSplit = true;
    for (let id = 0; id < vocabSize; id++) {
      const piece = asset.pieces[id];
      const type = asset.types[id];
      if (type === PIECE_TYPE.byte) {
        const byte = parseInt(BYTE_PIECE.exec(piece)![1], 16);
        this.byteValues[id] = byte;
        byteIds[byte] = id;
        this.surfaces[id] = '';
      } else if (type === PIECE_TYPE.control) {
        this.surfaces[id] = '';
      } else if (type === PIECE_TYPE.unknown) {
        this.surfaces[id] = UNKNOWN_SURFACE;
      } else {
        // Normal and user-defined pieces are what user text can become; control pieces ("<s>", "[INST]") never.
        if (pieceToId.has(piece)) throw new Error(`invalid tokenizer asset: pieces[${id}] duplicates ${JSON.stringify(piece)}`);
        pieceToId.set(piece, id);
        if (type === PIECE_TYPE.userDefined) userDefinedPieces.push(piece);
        const space = piece.indexOf(SPACE_SYMBOL);
        // Most pieces hold no "▁": skip the string work for them (this loop runs on a worker's cold start).
        this.surfaces[id] = space < 0 ? piece : piece.replaceAll(SPACE_SYMBOL, ' ');
        this.dropsLeadingSpace[id] = space === 0 ? 1 : 0;
        if (space >= 0 && (type === PIECE_TYPE.userDefined || /[^\u2581]\u2581/.test(piece))) preSplit = false;
      }
    }
    // Pre-splitting before each "▁" run that follows another character is exact only when no piece could
    // merge across that point, i.e. no piece has "▁" after another character (true for Mistral's vocabularies).
    this.preSplit = preSplit && options.preSplit !== false;
    this.cacheChunks = options.cacheChunks !== false;
    this.bpe = new Bpe({ pieceToId, scores: Float64Array.from(asset.scores), userDefinedPieces, byteIds, unkTokenId: asset.unkTokenId });
  }

  /** SentencePiece encode of plain text: dummy-prefix "▁", no BOS/EOS; control-piece text stays text. */
  encode(text: string): number[] {
    if (text.length === 0) return [];
    const tokenIds: number[] = [];
    this.encodeNormalized(this.normalize(text), tokenIds);
    return tokenIds;
  }

  /** SentencePiece decode: control ids vanish, bytes join into UTF-8, the first piece's "▁" is dropped. */
  decode(tokenIds: number[]): string {
    const decoder = new IncrementalDecoder(this);
    return decoder.push(tokenIds) + decoder.flush();
  }

  idToPiece(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize ? this.pieces[id] : undefined;
  }

  /**
   * How many leading ids of encode(text) stay the same in encode(text + anySuffix): ids before the last point
   * no merge can cross (a "▁" run after another character, or a character no multi-character piece contains,
   * such as "\n" in Mistral's vocabularies). Used for prompt-prefix caching of system prompts.
   */
  stablePrefixLength(text: string): number {
    if (text.length === 0) return 0;
    const normalized = this.normalize(text);
    const tokenIds: number[] = [];
    this.encodeNormalized(normalized.slice(0, this.stableCut(normalized)), tokenIds);
    return tokenIds.length;
  }

  /**
   * encode(prefix + rest) without encoding the prefix again: `prefixIds` must be
   * encode(prefix).slice(0, stablePrefixLength(prefix)) from this tokenizer (e.g. cached per system prompt).
   */
  encodeWithStablePrefix(prefix: string, prefixIds: number[], rest: string): number[] {
    // A high surrogate at the end could pair with the rest; rare enough to just encode everything.
    if (prefix.length === 0 || /[\ud800-\udbff]$/.test(prefix)) return this.encode(prefix + rest);
    const normalizedPrefix = this.normalize(prefix);
    const tokenIds = prefixIds.slice();
    const tail = normalizedPrefix.slice(this.stableCut(normalizedPrefix)) + toWellFormed(rest).replaceAll(' ', SPACE_SYMBOL);
    // No merge crosses the cut, so the text after it encodes on its own (no dummy prefix: it is mid-sequence).
    this.encodeNormalized(tail, tokenIds);
    return tokenIds;
  }

  /** Offset in `normalized` of the last point no merge can cross, whatever text is appended. */
  private stableCut(normalized: string): number {
    const isHard = this.hardCharacterTest();
    let cut = 0;
    let previous = -1;
    for (let position = 0; position < normalized.length; ) {
      const codePoint = normalized.codePointAt(position)!;
      const isWall = this.preSplit && codePoint === SPACE_SYMBOL_UNIT && previous !== SPACE_SYMBOL_UNIT && position > 0;
      if (isWall || isHard(codePoint) || (previous >= 0 && isHard(previous))) cut = position;
      previous = codePoint;
      position += codePoint > 0xffff ? 2 : 1;
    }
    return previous >= 0 && isHard(previous) ? normalized.length : cut;
  }

  private normalize(text: string): string {
    // Mistral's normalizer is "identity" with add_dummy_prefix and escaped (not collapsed) spaces.
    return SPACE_SYMBOL + toWellFormed(text).replaceAll(' ', SPACE_SYMBOL);
  }

  private encodeNormalized(normalized: string, out: number[]): void {
    if (!this.preSplit) {
      this.bpe.encode(normalized, out);
      return;
    }
    let start = 0;
    for (let position = 1; position < normalized.length; position++) {
      if (normalized.charCodeAt(position) === SPACE_SYMBOL_UNIT && normalized.charCodeAt(position - 1) !== SPACE_SYMBOL_UNIT) {
        this.encodeChunk(normalized.slice(start, position), out);
        start = position;
      }
    }
    this.encodeChunk(normalized.slice(start), out);
  }

  private encodeChunk(chunk: string, out: number[]): void {
    if (chunk.length > CACHE_MAX_CHUNK || !this.cacheChunks) {
      this.bpe.encode(chunk, out);
      return;
    }
    let cached = this.chunkCache.get(chunk);
    if (cached === undefined) {
      cached = [];
      this.bpe.encode(chunk, cached);
      // Bounded: drop the oldest entry (Map iterates in insertion order).
      if (this.chunkCache.size >= CACHE_ENTRIES) this.chunkCache.delete(this.chunkCache.keys().next().value!);
      this.chunkCache.set(chunk, cached);
    }
    for (let index = 0; index < cached.length; index++) out.push(cached[index]);
  }

  /** A character is "hard" when no mergeable piece longer than one character contains it (built on first use). */
  private hardCharacterTest(): (codePoint: number) => boolean {
    if (!this.hardCharacters) {
      const multiCharacterPieces: string[] = [];
      for (let id = 0; id < this.vocabSize; id++) {
        const type = this.types[id];
        if (type !== PIECE_TYPE.normal && type !== PIECE_TYPE.userDefined) continue;
        const piece = this.pieces[id];
        if (piece.length > 2 || (piece.length === 2 && piece.codePointAt(0)! <= 0xffff)) multiCharacterPieces.push(piece);
      }
      // One pass over the joined text, by UTF-16 unit: no per-character strings.
      const joined = multiCharacterPieces.join('');
      const inMultiCharacterPiece = new Set<number>();
      for (let position = 0; position < joined.length; position++) {
        const unit = joined.charCodeAt(position);
        if (unit < 0xd800 || unit > 0xdbff) inMultiCharacterPiece.add(unit);
        else inMultiCharacterPiece.add(joined.codePointAt(position++)!);
      }
      this.hardCharacters = (codePoint) => !inMultiCharacterPiece.has(codePoint);
    }
    return this.hardCharacters;
  }
}
