// JSON numbers as XGrammar 0.1.27 writes them have unbounded digits and exponents: a random or weak model
// then emits `6E+80249002285329`, which JSON.parse reads as Infinity. Its EBNF is rewritten so an integer (and
// the integral part of a number) has at most MAX_INTEGER_DIGITS digits, a fraction at most MAX_FRACTION_DIGITS,
// and an exponent at most MAX_EXPONENT_DIGITS: every emitted integer is a safe integer, every number finite.

export const MAX_INTEGER_DIGITS = 15;
export const MAX_FRACTION_DIGITS = 15;
export const MAX_EXPONENT_DIGITS = 2;

/** The rules of XGrammar's number grammar that repeat digits without end, as 0.1.27 prints them. */
const LEADING_DIGIT_THEN_ANY = '[1-9] [0-9]*';
/** `name ::= (([0-9] name) | ([0-9]))`: one or more digits, by right recursion. */
const DIGITS_RULE = /^(\S+) ::= \(\(\[0-9\] \1\) \| \(\[0-9\]\)\)$/gm;
/** The rule after `[eE] <sign rule>` in `basic_number`'s exponent is the exponent's digits. */
const EXPONENT_USE = /\[eE\] \S+ (\S+?)\)/;

/** `ebnf` with every unbounded digit run bounded; throws when the pinned XGrammar's shape is not found. */
export function boundNumbers(ebnf: string): string {
  const exponentRule = EXPONENT_USE.exec(ebnf)?.[1];
  const digitRules = [...ebnf.matchAll(DIGITS_RULE)].map((match) => match[1]);
  if (ebnf.includes('basic_number ::=') && (exponentRule === undefined || !digitRules.includes(exponentRule))) {
    throw new Error('XGrammar number rules changed shape (pinned at 0.1.27): number bounds cannot be applied');
  }
  return ebnf
    .replaceAll(LEADING_DIGIT_THEN_ANY, `[1-9] [0-9]{0,${MAX_INTEGER_DIGITS - 1}}`)
    .replace(DIGITS_RULE, (_line, name: string) => `${name} ::= [0-9]{1,${name === exponentRule ? MAX_EXPONENT_DIGITS : MAX_FRACTION_DIGITS}}`);
}
