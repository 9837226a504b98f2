// Integer bounds, which XGrammar 0.1.27 gets wrong for some ranges (seen: 0..120 let 121-129 through;
// minimum -100 refused -100..-93; bounds on non-integer numbers let 1.318 pass a maximum of 1). A two-sided
// integer range of at most MAX_RANGE values is rewritten as the enum of its values, which XGrammar matches
// exactly; a lone `minimum` of 0 or 1 (checked exact) is kept; every other numeric bound is refused.
// Integers are emitted with at most MAX_INTEGER_DIGITS digits (number-bounds.ts), so a bound beyond that many
// digits always holds and is dropped: zod 4 writes `.int()` as the safe-integer range, which then means "any".

import { MAX_INTEGER_DIGITS } from './number-bounds';

export const MAX_RANGE = 4096;
/** The largest integer the grammar can emit; a bound at or beyond it (either sign) constrains nothing. */
const LARGEST_EMITTED = 10 ** MAX_INTEGER_DIGITS - 1;
const BOUNDS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] as const;

type Schema = Record<string, unknown>;
export type IntegerBounds =
  | { kind: 'none' }
  /** Bounds are present but every integer the grammar can emit satisfies them. */
  | { kind: 'always' }
  | { kind: 'range'; low: number; high: number }
  | { kind: 'lower'; low: number }
  | { kind: 'refused'; why: string };

export function integerBoundsOf(schema: Schema): IntegerBounds {
  if (!BOUNDS.some((keyword) => keyword in schema)) return { kind: 'none' };
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (!types.includes('integer') || types.includes('number'))
    return { kind: 'refused', why: 'numeric bounds are enforced only on type "integer" (the grammar engine gets other number ranges wrong)' };
  const number = (keyword: string) => (typeof schema[keyword] === 'number' ? (schema[keyword] as number) : undefined);
  const lows = [
    number('minimum') === undefined ? -Infinity : Math.ceil(number('minimum')!),
    number('exclusiveMinimum') === undefined ? -Infinity : Math.floor(number('exclusiveMinimum')!) + 1,
  ];
  const highs = [
    number('maximum') === undefined ? Infinity : Math.floor(number('maximum')!),
    number('exclusiveMaximum') === undefined ? Infinity : Math.ceil(number('exclusiveMaximum')!) - 1,
  ];
  const low = Math.max(...lows) <= -LARGEST_EMITTED ? -Infinity : Math.max(...lows);
  const high = Math.min(...highs) >= LARGEST_EMITTED ? Infinity : Math.min(...highs);
  if (low === -Infinity && high === Infinity) return { kind: 'always' };
  if (Number.isFinite(low) && Number.isFinite(high)) {
    if (high < low) return { kind: 'refused', why: `the integer range ${low}..${high} is empty` };
    if (high - low + 1 > MAX_RANGE) return { kind: 'refused', why: `integer ranges are enforced up to ${MAX_RANGE} values; ${low}..${high} is wider` };
    return { kind: 'range', low, high };
  }
  if (high === Infinity && (low === 0 || low === 1)) return { kind: 'lower', low };
  return { kind: 'refused', why: 'a one-sided integer bound is enforced only as a minimum of 0 or 1; give both bounds' };
}

/** The subschema XGrammar compiles for one with integer bounds (see integerBoundsOf); others come back as they are. */
export function lowerIntegerBounds(schema: Schema): Schema {
  const bounds = integerBoundsOf(schema);
  if (bounds.kind === 'none' || bounds.kind === 'refused') return schema;
  const rest = Object.fromEntries(Object.entries(schema).filter(([keyword]) => !(BOUNDS as readonly string[]).includes(keyword) && keyword !== 'type'));
  const integer =
    bounds.kind === 'range'
      ? { enum: Array.from({ length: bounds.high - bounds.low + 1 }, (_, i) => bounds.low + i) }
      : bounds.kind === 'lower'
        ? { type: 'integer', minimum: bounds.low }
        : { type: 'integer' };
  const others = (Array.isArray(schema.type) ? schema.type : [schema.type]).filter((type) => type !== 'integer');
  if (others.length === 0) return { ...rest, ...integer };
  // Keywords of the other types (maxLength, items, ...) stay with them.
  return { anyOf: [integer, { ...rest, type: others.length === 1 ? others[0] : others }] };
}
