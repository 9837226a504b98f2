// The shared schema walk: every subschema once, parents first, under its JSON Pointer; the structural rules
// with their one message each; the two sides' differences as rules. ajv (the 2020-12 meta-schema, and its
// own $ref resolution) is the independent reference for what is malformed and what resolves.

import Ajv2020 from 'ajv/dist/2020';
import { describe, expect, it } from 'vitest';
import { MAX_SCHEMA_DEPTH, mapSubschemas, problemText, resolveLocalRef, type StructureRules, structuralProblem, subschemas } from './json-schema-walk';

const ajv = new Ajv2020({ strict: false, validateFormats: false });
const STRICT: StructureRules = { extraAnnotations: [], falseSchemas: true, maxNodes: undefined, rewritesTuples: false };
const problemOf = (schema: unknown, rules: StructureRules = STRICT) => {
  const problem = structuralProblem(schema, rules);
  return problem && problemText(problem);
};

describe('subschemas', () => {
  it('visits every subschema once, parents before children, under its JSON Pointer', () => {
    const schema = {
      type: 'object',
      properties: { 'a/b': { type: 'array', items: { type: 'string' } }, '~': { anyOf: [{ type: 'null' }, true] } },
      additionalProperties: false,
      prefixItems: [{ const: { type: 'not a schema' } }],
      $defs: { d: { enum: [{ properties: {} }] } },
    };
    const seen = [...subschemas(schema)].map(({ path, depth, keyword }) => [path, depth, keyword]);
    expect(seen).toEqual([
      ['', 0, null],
      ['/properties/a~1b', 1, 'properties'],
      ['/properties/a~1b/items', 2, 'items'],
      ['/properties/~0', 1, 'properties'],
      ['/properties/~0/anyOf/0', 2, 'anyOf'],
      ['/properties/~0/anyOf/1', 2, 'anyOf'],
      ['/additionalProperties', 1, 'additionalProperties'],
      ['/prefixItems/0', 1, 'prefixItems'],
      ['/$defs/d', 1, '$defs'],
    ]);
    // Each path names its own subschema (ajv resolves the same pointers as $refs).
    for (const { schema: sub, path } of subschemas(schema)) expect(resolveLocalRef(schema, `#${path}`)).toBe(sub);
  });

  it('does not descend into values of the wrong shape', () => {
    expect([...subschemas({ properties: 5, anyOf: { a: {} }, $defs: [{}] })].map(({ path }) => path)).toEqual(['']);
  });
});

describe('mapSubschemas', () => {
  it('maps each direct subschema and nothing else, in order', () => {
    const schema = { enum: [{ type: 'x' }], properties: { b: { type: 'x' }, a: { type: 'x' } }, items: false, anyOf: [{ type: 'x' }], default: { type: 'x' } };
    const mapped = mapSubschemas(schema, (sub) => (typeof sub === 'object' ? { type: 'y' } : 'bool'));
    expect(mapped).toEqual({
      enum: [{ type: 'x' }],
      properties: { b: { type: 'y' }, a: { type: 'y' } },
      items: 'bool',
      anyOf: [{ type: 'y' }],
      default: { type: 'x' },
    });
    expect(Object.keys(mapped.properties as object)).toEqual(['b', 'a']);
    // A draft-07 tuple: each listed item, and additionalItems.
    expect(
      mapSubschemas({ items: [{ type: 'x' }, true], additionalItems: { type: 'x' } }, (sub) => (typeof sub === 'object' ? { type: 'y' } : 'bool')),
    ).toEqual({
      items: [{ type: 'y' }, 'bool'],
      additionalItems: { type: 'y' },
    });
  });
});

describe('resolveLocalRef', () => {
  const root = { $defs: { 'a/b': { type: 'string' }, '%': { type: 'null' } }, prefixItems: [{ type: 'integer' }] };
  it.each([
    ['#', true],
    ['#/$defs/a~1b', true],
    ['#/$defs/%25', true],
    ['#/prefixItems/0', true],
    ['#/$defs/missing', false],
    ['#/prefixItems/1', false],
    ['#/$defs/%zz', false],
    ['https://example.com/s.json', false],
  ])('%s resolves: %s (as ajv finds)', (ref, resolves) => {
    expect(resolveLocalRef(root, ref) !== undefined).toBe(resolves);
    let compiled = true;
    try {
      new Ajv2020({ strict: false }).compile({ ...root, properties: { x: { $ref: ref } } });
    } catch {
      compiled = false;
    }
    expect(compiled).toBe(resolves);
  });
});

describe('structuralProblem', () => {
  it.each([
    [
      { type: 'object', properties: { a: { type: 'string', not: { const: 'x' } } } },
      '/properties/a/not: the keyword "not" is not enforced by the grammar engine',
    ],
    [{ oneOf: [{ type: 'string' }] }, '/oneOf: the keyword "oneOf" is not enforced by the grammar engine (its exclusivity cannot be enforced; use anyOf)'],
    [{ type: 'strng' }, '/type: unknown type "strng"; use one of string, number, integer, boolean, object, array, null'],
    [{ type: [] }, '/type: type must not be an empty array'],
    [
      { type: 'string', format: 'int32' },
      '/format: format "int32" cannot be enforced; supported formats: date-time, date, time, duration, email, hostname, ipv4, ipv6, uri, uri-reference, uuid, json-pointer',
    ],
    [{ type: 'string', maxLength: -1 }, '/maxLength: maxLength must be a non-negative integer'],
    [{ type: 'array', minItems: 1.5 }, '/minItems: minItems must be a non-negative integer'],
    [{ type: 'integer', maximum: '3' }, '/maximum: maximum must be a number'],
    [{ type: 'string', pattern: 3 }, '/pattern: a pattern must be a string'],
    [{ type: 'string', pattern: '([a-z' }, '/pattern: "([a-z" is not a valid regular expression'],
    [{ enum: 'a' }, '/enum: enum must be a non-empty array'],
    [{ type: 'object', required: [1] }, '/required: required must be an array of property names'],
    [{ properties: [] }, '/properties: properties must be an object of schemas'],
    [{ anyOf: {} }, '/anyOf: anyOf must be a non-empty array of schemas'],
    [{ type: 'array', items: [{ type: 'string' }] }, '/items: items as an array (draft-07 tuples) is not supported; use prefixItems'],
    [{ type: 'object', additionalProperties: 'no' }, '/additionalProperties: a schema must be a JSON object or a boolean'],
    [{ $defs: { a: null } }, '/$defs/a: a schema must be a JSON object or a boolean'],
  ])('%j: %s (and the meta-schema refuses it too)', (schema, message) => {
    expect(problemOf(schema)).toBe(message);
    // Where the 2020-12 meta-schema has a say, it agrees the schema is malformed or names an unknown type.
    if (!/not enforced|cannot be enforced|regular expression/.test(message)) expect(ajv.validateSchema(schema)).toBe(false);
  });

  it.each([
    [{ enum: [] }, '/enum: enum must be a non-empty array'],
    [{ type: 'string', minLength: 5, maxLength: 2 }, '(root): minLength 5 is greater than maxLength 2'],
    [{ type: 'array', items: { minItems: 3, maxItems: 2 } }, '/items: minItems 3 is greater than maxItems 2'],
    [{ type: 'integer', minimum: 4, maximum: 3 }, '(root): minimum 4 is greater than maximum 3'],
    [{ $ref: '#/$defs/missing' }, '/$ref: $ref "#/$defs/missing" does not resolve inside the schema (only "#" and "#/..." references are supported)'],
    [
      { properties: { a: { $ref: 'https://example.com/s.json' } } },
      '/properties/a/$ref: $ref "https://example.com/s.json" does not resolve inside the schema (only "#" and "#/..." references are supported)',
    ],
  ])('%j is well formed but matches nothing the engine can build: %s', (schema, message) => {
    expect(ajv.validateSchema(schema)).toBe(true);
    expect(problemOf(schema)).toBe(message);
  });

  it('reports the shallowest problem first', () => {
    expect(problemOf({ properties: { a: { uniqueItems: true } }, minProperties: 1 })).toBe(
      '/minProperties: the keyword "minProperties" is not enforced by the grammar engine',
    );
  });

  it('passes schemas made of enforced keywords and annotations, which ajv accepts too', () => {
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      title: 't',
      type: 'object',
      properties: { s: { type: 'string', pattern: '^[a-z]+$', format: 'date', maxLength: 9 }, n: { type: ['integer', 'null'], minimum: 0, maximum: 9 } },
      required: ['s'],
      additionalProperties: false,
      $defs: { tree: { type: 'array', prefixItems: [{ const: 1 }], items: { $ref: '#/$defs/tree' }, maxItems: 3 } },
    };
    expect(ajv.validateSchema(schema)).toBe(true);
    expect(structuralProblem(schema, STRICT)).toBeNull();
  });
});

describe('the two sides, as rules', () => {
  it('nullable is an annotation only where extraAnnotations names it', () => {
    const schema = { type: 'string', nullable: true };
    expect(problemOf(schema)).toBe('/nullable: the keyword "nullable" is not enforced by the grammar engine');
    expect(problemOf(schema, { ...STRICT, extraAnnotations: ['nullable'] })).toBeNull();
  });

  it('false schemas are refused where falseSchemas is off, except as additionalProperties', () => {
    const closed = { type: 'array', prefixItems: [{ type: 'null' }], items: false };
    const noFalse = { ...STRICT, falseSchemas: false };
    expect(problemOf(closed)).toBeNull();
    expect(problemOf(closed, noFalse)).toBe('/items: a false schema (nothing allowed) is not supported; leave the property out instead');
    // Where tuples are rewritten (the edge), items: false closes one and passes; a false elsewhere still does not.
    expect(problemOf(closed, { ...noFalse, rewritesTuples: true })).toBeNull();
    expect(problemOf({ type: 'object', properties: { a: false } }, { ...noFalse, rewritesTuples: true })).toBe(
      '/properties/a: a false schema (nothing allowed) is not supported; leave the property out instead',
    );
    expect(problemOf({ type: 'object', additionalProperties: false, unevaluatedProperties: false }, noFalse)).toBeNull();
  });

  it(`refuses as too large more than maxNodes subschemas, and more than ${MAX_SCHEMA_DEPTH} levels, on either side`, () => {
    const wide = (count: number) => ({ type: 'object', properties: Object.fromEntries(Array.from({ length: count }, (_, i) => [`p${i}`, true])) });
    const rules = { ...STRICT, maxNodes: 100 };
    expect(structuralProblem(wide(99), rules)).toBeNull(); // the root and 99 properties
    expect(structuralProblem(wide(100), rules)).toEqual({ path: '/properties/p99', message: 'the schema has more than 100 subschemas', tooLarge: true });
    expect(structuralProblem(wide(5000), STRICT)).toBeNull();
    const deep = (levels: number): unknown => (levels === 0 ? { type: 'string' } : { type: 'array', items: deep(levels - 1) });
    expect(structuralProblem(deep(MAX_SCHEMA_DEPTH), STRICT)).toBeNull();
    const tooDeep = structuralProblem(deep(MAX_SCHEMA_DEPTH + 1), STRICT);
    expect(tooDeep).toMatchObject({ message: `nested deeper than ${MAX_SCHEMA_DEPTH} levels`, tooLarge: true });
    expect(tooDeep?.path.split('/items').length).toBe(MAX_SCHEMA_DEPTH + 2);
  });
});
