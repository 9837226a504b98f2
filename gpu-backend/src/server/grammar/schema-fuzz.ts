// Seeded hostile JSON Schemas for the grammar fuzz test: recursive $refs (some that can end, some that
// cannot), deep nesting, huge enums, contradictory keywords, unicode patterns and strings, numeric bounds.
// Each comes from a small family chosen by the seed, so a failure names a reproducible seed.

type Schema = Record<string, unknown>;

/** mulberry32: small, fast and reproducible; the fuzz cases need no better randomness. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const UNICODE = ['é', 'ß', 'α', 'Ж', '中', '日本', '🙂', '\u00a0', 'ﬁ', '\u200b'];

class Generator {
  constructor(private readonly next: () => number) {}

  int(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }

  leaf(): Schema {
    return this.pick<() => Schema>([
      () => ({ type: 'string', maxLength: this.int(0, 6) }),
      () => ({ type: 'integer' }),
      () => ({ type: 'number' }),
      () => ({ type: 'boolean' }),
      () => ({ type: 'null' }),
      () => ({ type: 'integer', minimum: this.int(-50, 0), maximum: this.int(0, 50) }),
      () => ({ type: 'integer', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER }),
      () => ({ enum: [this.pick(UNICODE), this.int(0, 9), null] }),
      () => ({ type: 'string', pattern: `^[${this.pick(['a-z', 'α-ω', 'а-я', '0-9'])}]{1,${this.int(1, 4)}}$` }),
      () => ({ const: this.pick(UNICODE) }),
      () => ({ type: 'string', format: this.pick(['date', 'uuid', 'ipv4', 'email']) }),
    ])();
  }

  nested(depth: number): Schema {
    if (depth <= 0 || this.next() < 0.2) return this.leaf();
    if (this.next() < 0.5) return { type: 'array', items: this.nested(depth - 1), maxItems: this.int(0, 2) };
    const name = this.pick(['a', 'b', 'ключ', 'k/1', 'x~y', 'é']);
    return { type: 'object', properties: { [name]: this.nested(depth - 1) }, required: this.next() < 0.7 ? [name] : [] };
  }

  recursive(): Schema {
    return this.pick<() => Schema>([
      () => ({ $ref: '#' }),
      () => ({ $defs: { a: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' }),
      () => ({ $defs: { a: { $ref: '#/$defs/b' }, b: { type: 'object', properties: { x: { $ref: '#/$defs/a' } }, required: ['x'] } }, $ref: '#/$defs/a' }),
      () => ({ type: 'object', properties: { next: { anyOf: [{ $ref: '#' }, { type: 'null' }] }, v: this.leaf() }, required: ['next', 'v'] }),
      () => ({ type: 'object', properties: { kids: { type: 'array', items: { $ref: '#' }, maxItems: 2, minItems: this.int(0, 1) } }, required: ['kids'] }),
      () => ({
        $defs: { n: { type: 'object', properties: { n: { $ref: '#/$defs/n' } } } },
        type: 'object',
        properties: { root: { $ref: '#/$defs/n' } },
        required: ['root'],
      }),
      () => ({ type: 'object', properties: { self: { $ref: '#/properties/self' } }, required: this.next() < 0.5 ? ['self'] : [] }),
      () => ({ $ref: this.pick(['#/$defs/none', 'https://example.com/s.json', '#/properties/0']) }),
    ])();
  }

  contradictory(): Schema {
    return this.pick<() => Schema>([
      () => ({ type: 'string', const: 'a', enum: ['b'] }),
      () => ({ type: 'integer', enum: ['x', 1] }),
      () => ({ type: 'object', properties: {}, required: ['x'], additionalProperties: false }),
      () => ({ type: 'object', properties: { a: this.leaf() }, required: ['a', 'b'] }),
      () => ({ type: 'array', minItems: this.int(3, 5), maxItems: this.int(0, 2) }),
      () => ({ type: 'string', minLength: this.int(5, 9), maxLength: this.int(0, 4) }),
      () => ({ type: 'integer', minimum: this.int(10, 20), maximum: this.int(0, 9) }),
      () => ({ type: 'number', minimum: 0 }),
      () => ({ type: 'object', properties: { a: { type: 'string' } }, required: ['a'], minProperties: 2 }),
      () => ({ oneOf: [this.leaf(), this.leaf()] }),
      () => ({ type: 'string', pattern: '[' }),
      () => ({ type: 'array', prefixItems: [this.leaf()], items: false, minItems: 2 }),
    ])();
  }

  hugeEnum(): Schema {
    const count = this.int(20, 2500);
    const ascii = this.next() < 0.5;
    const values = Array.from({ length: count }, (_, i) => (this.next() < 0.5 ? `${ascii ? this.pick(['a', 'b c', '-']) : this.pick(UNICODE)}${i}` : i));
    return { enum: values };
  }

  schema(): { family: FuzzFamily; schema: Schema } {
    const family = FAMILIES[this.int(0, FAMILIES.length - 1)];
    if (family === 'recursive') return { family, schema: this.recursive() };
    if (family === 'nested') return { family, schema: this.nested(this.int(1, 40)) };
    if (family === 'contradictory') return { family, schema: this.contradictory() };
    if (family === 'huge-enum') return { family, schema: this.hugeEnum() };
    return { family, schema: this.mixed() };
  }

  mixed(): Schema {
    return { type: 'object', properties: { a: this.leaf(), b: this.nested(3), c: { anyOf: [this.leaf(), this.leaf()] } }, required: ['a', 'b', 'c'] };
  }
}

const FAMILIES = ['recursive', 'nested', 'contradictory', 'huge-enum', 'mixed'] as const;
export type FuzzFamily = (typeof FAMILIES)[number];

/** The fuzz schema of `seed` and its family (the same seed gives the same schema). */
export function fuzzSchema(seed: number): { family: FuzzFamily; schema: Schema } {
  return new Generator(random(seed)).schema();
}
