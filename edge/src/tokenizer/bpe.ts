// SentencePiece BPE merging of one normalized chunk: start from code points (user-defined pieces stay whole),
// repeatedly merge the adjacent pair whose concatenation is the highest-scoring piece (ties: leftmost),
// then map symbols to ids with <0xXX> byte fallback. Same rules as sentencepiece's bpe_model.cc Encode.

export interface BpeVocabulary {
  /** Pieces a merge may produce or a symbol may end as: normal and user-defined pieces only. */
  pieceToId: Map<string, number>;
  scores: Float64Array; // [vocab]
  /** User-defined pieces: matched greedily in the text as unmergeable symbols. */
  userDefinedPieces: string[];
  byteIds: Int32Array; // [256] id of <0xXX>, -1 if absent
  unkTokenId: number;
}

const INITIAL_CAPACITY = 256;

export class Bpe {
  private readonly vocabulary: BpeVocabulary;
  private readonly userDefinedByFirstUnit = new Map<number, string[]>();
  // Symbols form a linked list over the chunk; a merged-away symbol has length 0.
  private symbolStart = new Int32Array(INITIAL_CAPACITY);
  private symbolLength = new Int32Array(INITIAL_CAPACITY);
  private symbolPrev = new Int32Array(INITIAL_CAPACITY);
  private symbolNext = new Int32Array(INITIAL_CAPACITY);
  private symbolFrozen = new Uint8Array(INITIAL_CAPACITY);
  // Candidate merges: a binary max-heap of entry indices; an entry is (left, right, merged length, score).
  private entryLeft = new Int32Array(INITIAL_CAPACITY * 3);
  private entryRight = new Int32Array(INITIAL_CAPACITY * 3);
  private entrySize = new Int32Array(INITIAL_CAPACITY * 3);
  private entryScore = new Float64Array(INITIAL_CAPACITY * 3);
  private heap = new Int32Array(INITIAL_CAPACITY * 3);
  private heapCount = 0;
  private entryCount = 0;
  private chunk = '';

  constructor(vocabulary: BpeVocabulary) {
    this.vocabulary = vocabulary;
    // Longest first, so the greedy match prefers the longest user-defined piece (SentencePiece's PrefixMatcher).
    const sorted = [...vocabulary.userDefinedPieces].sort((a, b) => b.length - a.length);
    for (const piece of sorted) {
      const unit = piece.charCodeAt(0);
      const list = this.userDefinedByFirstUnit.get(unit);
      if (list) list.push(piece);
      else this.userDefinedByFirstUnit.set(unit, [piece]);
    }
  }

  /** Appends the ids of `chunk` (already normalized: spaces as "▁", well-formed UTF-16) to `out`. */
  encode(chunk: string, out: number[]): void {
    if (chunk.length === 0) return;
    const symbolCount = this.splitSymbols(chunk);
    this.chunk = chunk;
    this.heapCount = 0;
    this.entryCount = 0;
    for (let index = 1; index < symbolCount; index++) this.addPair(index - 1, index);
    const length = this.symbolLength;
    const next = this.symbolNext;
    const prev = this.symbolPrev;
    while (this.heapCount > 0) {
      const entry = this.popBest();
      const left = this.entryLeft[entry];
      const right = this.entryRight[entry];
      // Stale entry: one side was merged away or grew since the pair was queued (lengths only grow).
      if (length[left] === 0 || length[right] === 0 || length[left] + length[right] !== this.entrySize[entry]) continue;
      length[left] += length[right];
      length[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      if (prev[left] >= 0) this.addPair(prev[left], left);
      if (next[left] >= 0) this.addPair(left, next[left]);
    }
    for (let index = 0; index >= 0; index = next[index]) {
      const piece = chunk.substr(this.symbolStart[index], length[index]);
      const id = this.vocabulary.pieceToId.get(piece);
      if (id !== undefined) out.push(id);
      else this.pushByteFallback(piece, out);
    }
  }

  private splitSymbols(chunk: string): number {
    this.ensureSymbolCapacity(chunk.length);
    let count = 0;
    for (let position = 0; position < chunk.length; ) {
      let size = this.userDefinedPieces(chunk, position);
      this.symbolFrozen[count] = size > 0 ? 1 : 0;
      if (size === 0) {
        const unit = chunk.charCodeAt(position);
        size = unit >= 0xd800 && unit <= 0xdbff && position + 1 < chunk.length ? 2 : 1;
      }
      this.symbolStart[count] = position;
      this.symbolLength[count] = size;
      this.symbolPrev[count] = count - 1;
      this.symbolNext[count] = count + 1;
      count++;
      position += size;
    }
    this.symbolNext[count - 1] = -1;
    return count;
  }

  private userDefinedPieces(chunk: string, position: number): number {
    if (this.userDefinedByFirstUnit.size === 0) return 0;
    const candidates = this.userDefinedByFirstUnit.get(chunk.charCodeAt(position));
    if (!candidates) return 0;
    for (const piece of candidates) if (chunk.startsWith(piece, position)) return piece.length;
    return 0;
  }

  private addPair(left: number, right: number): void {
    if (this.symbolFrozen[left] || this.symbolFrozen[right]) return;
    const size = this.symbolLength[left] + this.symbolLength[right];
    const id = this.vocabulary.pieceToId.get(this.chunk.substr(this.symbolStart[left], size));
    if (id === undefined) return;
    const entry = this.entryCount++;
    if (entry >= this.entryLeft.length) this.growEntries();
    this.entryLeft[entry] = left;
    this.entryRight[entry] = right;
    this.entrySize[entry] = size;
    this.entryScore[entry] = this.vocabulary.scores[id];
    this.pushHeap(entry);
  }

  /** Higher score first; equal scores: leftmost symbol first. */
  private before(a: number, b: number): boolean {
    const scoreA = this.entryScore[a];
    const scoreB = this.entryScore[b];
    return scoreA > scoreB || (scoreA === scoreB && this.entryLeft[a] < this.entryLeft[b]);
  }

  private pushHeap(entry: number): void {
    const heap = this.heap;
    let position = this.heapCount++;
    while (position > 0) {
      const parent = (position - 1) >> 1;
      if (!this.before(entry, heap[parent])) break;
      heap[position] = heap[parent];
      position = parent;
    }
    heap[position] = entry;
  }

  private popBest(): number {
    const heap = this.heap;
    const best = heap[0];
    const last = heap[--this.heapCount];
    const count = this.heapCount;
    let position = 0;
    for (;;) {
      let child = 2 * position + 1;
      if (child >= count) break;
      if (child + 1 < count && this.before(heap[child + 1], heap[child])) child++;
      if (!this.before(heap[child], last)) break;
      heap[position] = heap[child];
      position = child;
    }
    heap[position] = last;
    return best;
  }

  private pushByteFallback(symbol: string, out: number[]): void {
    // An unmerged symbol missing from the vocabulary is a single code point: emit its UTF-8 bytes.
    const codePoint = symbol.codePointAt(0) ?? 0xfffd;
    const bytes =
      codePoint < 0x80
        ? [codePoint]
        : codePoint < 0x800
          ? [0xc0 | (codePoint >> 6), 0x80 | (codePoint & 0x3f)]
          : codePoint < 0x10000
            ? [0xe0 | (codePoint >> 12), 0x80 | ((codePoint >> 6) & 0x3f), 0x80 | (codePoint & 0x3f)]
            : [0xf0 | (codePoint >> 18), 0x80 | ((codePoint >> 12) & 0x3f), 0x80 | ((codePoint >> 6) & 0x3f), 0x80 | (codePoint & 0x3f)];
    for (const byte of bytes) {
      const id = this.vocabulary.byteIds[byte];
      out.push(id >= 0 ? id : this.vocabulary.unkTokenId);
    }
  }

  private ensureSymbolCapacity(size: number): void {
    if (size <= this.symbolStart.length) return;
    const capacity = Math.max(size, this.symbolStart.length * 2);
    this.symbolStart = new Int32Array(capacity);
    this.symbolLength = new Int32Array(capacity);
    this.symbolPrev = new Int32Array(capacity);
    this.symbolNext = new Int32Array(capacity);
    this.symbolFrozen = new Uint8Array(capacity);
  }

  private growEntries(): void {
    const capacity = this.entryLeft.length * 2;
    const grow = <T extends Int32Array | Float64Array>(array: T, make: (size: number) => T): T => {
      const bigger = make(capacity);
      bigger.set(array);
      return bigger;
    };
    this.entryLeft = grow(this.entryLeft, (size) => new Int32Array(size));
    this.entryRight = grow(this.entryRight, (size) => new Int32Array(size));
    this.entrySize = grow(this.entrySize, (size) => new Int32Array(size));
    this.entryScore = grow(this.entryScore, (size) => new Float64Array(size));
    this.heap = grow(this.heap, (size) => new Int32Array(size));
  }
}
