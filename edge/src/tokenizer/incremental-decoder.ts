// Streaming detokenization: push ids as the backend sends them, get text that is final. Concatenating every
// push() and the flush() equals Tokenizer.decode(allIds) (sentencepiece's DecodeIds), so a stream never emits
// half a UTF-8 character and drops the dummy-prefix space only at the very start.

import type { Tokenizer } from './tokenizer';

const REPLACEMENT = '\ufffd';

/** Bytes a UTF-8 sequence starting with `lead` needs, or 0 when `lead` cannot start one. */
function sequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

/** Whether `byte` may follow `lead` as the second byte (excludes overlongs, surrogates, > U+10FFFF). */
function validSecond(lead: number, byte: number): boolean {
  if (lead === 0xe0) return byte >= 0xa0 && byte <= 0xbf;
  if (lead === 0xed) return byte >= 0x80 && byte <= 0x9f;
  if (lead === 0xf0) return byte >= 0x90 && byte <= 0xbf;
  if (lead === 0xf4) return byte >= 0x80 && byte <= 0x8f;
  return byte >= 0x80 && byte <= 0xbf;
}

export class IncrementalDecoder {
  private readonly tokenizer: Tokenizer;
  private readonly pendingBytes: number[] = [];
  // sentencepiece's decode state: a leading "▁" may be dropped until a piece consumed one or text was produced.
  private atStart = true;
  private consumedLeadingSpace = false;
  private producedText = false;

  constructor(tokenizer: Tokenizer) {
    this.tokenizer = tokenizer;
  }

  /** Returns the text these ids complete. Throws RangeError on an id outside the vocabulary. */
  push(tokenIds: number[]): string {
    let text = '';
    const { byteValues, surfaces, dropsLeadingSpace, vocabSize } = this.tokenizer;
    for (const id of tokenIds) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`token id ${id} is outside the vocabulary`);
      const byte = byteValues[id];
      if (byte >= 0) {
        this.pendingBytes.push(byte);
        text += this.takeBytes(false);
        continue;
      }
      text += this.takeBytes(true);
      if (this.consumedLeadingSpace || this.producedText || text.length > 0) this.atStart = false;
      let surface = surfaces[id];
      this.consumedLeadingSpace = false;
      if (this.atStart && dropsLeadingSpace[id]) {
        surface = surface.slice(1);
        this.consumedLeadingSpace = true;
      }
      text += surface;
    }
    if (text.length > 0) this.producedText = true;
    return text;
  }

  /** Ends the sequence: bytes that never completed a character become U+FFFD, one per byte. */
  flush(): string {
    const text = this.takeBytes(true);
    if (text.length > 0) this.producedText = true;
    return text;
  }

  /**
   * Decodes the complete characters at the front of the pending bytes. Bytes that cannot be part of a valid
   * sequence become U+FFFD one per byte (sentencepiece's rule); an unfinished but still valid tail waits,
   * unless `final`.
   */
  private takeBytes(final: boolean): string {
    const bytes = this.pendingBytes;
    let text = '';
    let position = 0;
    while (position < bytes.length) {
      const lead = bytes[position];
      const need = sequenceLength(lead);
      if (need === 0) {
        text += REPLACEMENT;
        position++;
        continue;
      }
      let have = 1;
      let valid = true;
      while (have < need && position + have < bytes.length) {
        const byte = bytes[position + have];
        if (have === 1 ? !validSecond(lead, byte) : byte < 0x80 || byte > 0xbf) {
          valid = false;
          break;
        }
        have++;
      }
      if (!valid) {
        text += REPLACEMENT;
        position++;
      } else if (have < need) {
        if (!final) break;
        text += REPLACEMENT;
        position++;
      } else {
        let codePoint = need === 1 ? lead : lead & (0xff >> (need + 1));
        for (let index = 1; index < need; index++) codePoint = (codePoint << 6) | (bytes[position + index] & 0x3f);
        text += String.fromCodePoint(codePoint);
        position += need;
      }
    }
    bytes.splice(0, position);
    return text;
  }
}
