// JSON Schemas covering what the grammar path supports (nested objects, bounded arrays, enum/const, integer
// bounds, maxLength and pattern strings, anyOf, nullable types, optional properties, a top-level array):
// the structured-output test validates answers against them and bench:grammar times their compiles.

export const SAMPLE_SCHEMAS: Record<string, Record<string, unknown>> = {
  nested: {
    type: 'object',
    properties: {
      user: { type: 'object', properties: { id: { type: 'integer', minimum: 1, maximum: 999 }, admin: { type: 'boolean' } }, required: ['id', 'admin'] },
    },
    required: ['user'],
  },
  arrays: { type: 'object', properties: { tags: { type: 'array', items: { type: 'string', maxLength: 4 }, minItems: 1, maxItems: 3 } }, required: ['tags'] },
  enumConst: { type: 'object', properties: { color: { enum: ['red', 'green', 7, null] }, kind: { const: 'point' } }, required: ['color', 'kind'] },
  numbers: {
    type: 'object',
    // 0..120 is a range XGrammar 0.1.27 gets wrong on its own (121-129 passed): lowered to an enum.
    properties: {
      n: { type: 'integer', minimum: -5, maximum: 40 },
      x: { type: 'number' },
      e: { type: 'integer', exclusiveMinimum: 2, exclusiveMaximum: 5 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      count: { type: 'integer', minimum: 1 },
    },
    required: ['n', 'x', 'e', 'age', 'count'],
  },
  // `.` and maxLength strings: XGrammar alone lets raw quotes and control bytes into them (see json-string-safety.ts).
  strings: {
    type: 'object',
    properties: {
      code: { type: 'string', pattern: '^[a-z]{2,4}-[0-9]$' },
      note: { type: 'string', maxLength: 6 },
      any: { type: 'string', pattern: '^.{1,3}$' },
    },
    required: ['code', 'note', 'any'],
  },
  anyOf: {
    type: 'object',
    properties: {
      v: {
        anyOf: [
          { type: 'integer', minimum: 0, maximum: 9 },
          { type: 'string', maxLength: 3 },
          { type: 'array', items: { type: 'boolean' }, maxItems: 2 },
        ],
      },
    },
    required: ['v'],
  },
  nullable: {
    type: 'object',
    properties: { name: { type: ['string', 'null'], maxLength: 5 }, age: { type: ['integer', 'null'], minimum: 0, maximum: 120 } },
    required: ['name', 'age'],
  },
  optional: {
    type: 'object',
    properties: { a: { type: 'boolean' }, b: { type: 'integer', minimum: 0, maximum: 3 }, c: { enum: ['x', 'y'] } },
    required: ['b'],
  },
  topArray: { type: 'array', items: { type: 'object', properties: { k: { type: 'string', maxLength: 2 } }, required: ['k'] }, minItems: 2, maxItems: 2 },
};
