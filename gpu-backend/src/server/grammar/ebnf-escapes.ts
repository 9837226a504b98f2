// XGrammar 0.1.27 prints non-ASCII code points as `\xHH`, `\uHHHH` or `\UHHHHHHHH` escapes, but its parser
// reads some of them greedily (every hex digit that follows), so printing and parsing again turns
// `"\xa0341"` (U+00A0, then "341") into U+A0341, and enum values and character classes outside ASCII then
// match the wrong text. The printed EBNF is compiled again after our rewrites, so every escape of a printable
// character becomes the character itself (the parser reads UTF-8), and control characters `\u00HH`, which it
// reads as exactly four digits.

const ESCAPE = /\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})/g;
/** Characters that mean something inside an EBNF literal or class: they stay escaped. */
const SPECIAL = new Set(['"', '\\', '[', ']', '-', '^']);

/** `ebnf` as XGrammar printed it, with every escape spelled so it parses back to the same code point. */
export function reparsableEscapes(ebnf: string): string {
  return ebnf.replace(ESCAPE, (spelled, body: string) => {
    if (body === '\\') return spelled;
    const codePoint = Number.parseInt(body.slice(1), 16);
    const char = String.fromCodePoint(codePoint);
    if (codePoint < 0x20 || codePoint === 0x7f) return `\\u${codePoint.toString(16).padStart(4, '0')}`;
    return SPECIAL.has(char) ? spelled : char;
  });
}
