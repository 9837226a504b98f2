// XGrammar 0.1.27 writes the characters of constrained JSON strings (maxLength, minLength, pattern) with
// classes that admit what JSON forbids unescaped inside a string: `[^"\\\r\n]` lets a tab or any other
// control byte through, and a pattern's `.` or `[^a]` becomes `[\0-\U0010ffff]` / `[^a]`, which admit a raw
// `"` or `\` (seen with a random model: {"tags": ["/>\u0001..."]} failed JSON.parse). This narrows every
// negated class and the any-character class of the generated EBNF to JSON-safe characters. Positive classes
// are left alone (escape rules use them on purpose); patterns whose positive classes reach those characters
// are refused by schema-check instead.

/** EBNF class items: quote, backslash, controls. */
const UNSAFE = '\\"\\\\\\0-\\x1f';
const ANY_CHARACTER = '[\\0-\\U0010ffff]';

/** The EBNF with negated and any-character classes outside string literals restricted to JSON-safe characters. */
export function restrictStringCharacters(ebnf: string): string {
  let out = '';
  let index = 0;
  while (index < ebnf.length) {
    const char = ebnf[index];
    if (char === '"' || char === '[') {
      const close = char === '"' ? '"' : ']';
      let end = index + 1;
      while (end < ebnf.length && ebnf[end] !== close) end += ebnf[end] === '\\' ? 2 : 1;
      const token = ebnf.slice(index, end + 1);
      if (token === ANY_CHARACTER) out += `[^${UNSAFE}]`;
      else if (char === '[' && token.startsWith('[^')) out += `${token.slice(0, -1)}${UNSAFE}]`;
      else out += token;
      index = end + 1;
    } else if (char === '#') {
      const end = ebnf.indexOf('\n', index);
      out += ebnf.slice(index, end < 0 ? ebnf.length : end);
      index = end < 0 ? ebnf.length : end;
    } else {
      out += char;
      index++;
    }
  }
  return out;
}

const CONTROL_OR_QUOTE = (code: number) => code < 0x20 || code === 0x22 || code === 0x5c;

/**
 * Null when the pattern's positive character classes and class escapes stay clear of `"`, `\` and control
 * characters (which XGrammar would emit raw, breaking the JSON string); otherwise why not.
 */
export function patternProblem(pattern: string): string | null {
  if (/\\[sSWD]/.test(pattern)) return 'uses \\s, \\S, \\W or \\D, which match characters a JSON string must escape';
  // XGrammar 0.1.27 matches classes with characters beyond ASCII wrongly (seen: [а-я] refused "ж" and let "@"
  // through), negated or not; literal non-ASCII characters outside classes match as written.
  for (const match of pattern.matchAll(/\[((?:\\.|[^\]\\])*)\]/g)) {
    if ([...match[1]].some((char) => char.codePointAt(0)! > 0x7f) || /\\u|\\x[89a-fA-F]/.test(match[1]))
      return `the class [${match[1]}] holds characters beyond ASCII, which the grammar engine matches wrongly`;
  }
  for (const match of pattern.matchAll(/\[(?!\^)((?:\\.|[^\]\\])*)\]/g)) {
    const body = match[1];
    let i = 0;
    const next = (): number => {
      if (body[i] === '\\') {
        const escaped = body[i + 1];
        i += 2;
        if (escaped === 'x') {
          const code = parseInt(body.slice(i, i + 2), 16);
          i += 2;
          return code;
        }
        return { n: 10, r: 13, t: 9, f: 12, v: 11 }[escaped as 'n'] ?? escaped.charCodeAt(0);
      }
      return body.charCodeAt(i++);
    };
    while (i < body.length) {
      const low = next();
      let high = low;
      if (body[i] === '-' && i + 1 < body.length) {
        i++;
        high = next();
      }
      for (const code of [low, high, 0x22, 0x5c])
        if (code >= low && code <= high && CONTROL_OR_QUOTE(code)) return `the class [${body}] can match a character a JSON string must escape`;
    }
  }
  return null;
}
