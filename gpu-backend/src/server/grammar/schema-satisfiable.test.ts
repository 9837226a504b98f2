// Schemas without a finite value are refused naming the path; schemas with one (recursive ones included) pass,
// each with a value that ajv accepts as the independent proof that it has one.

import Ajv2020 from 'ajv/dist/2020';
import { describe, expect, it } from 'vitest';
import { unsatisfiableProblem } from './schema-satisfiable';
import { schemaProblem } from './schema-check';

const ajv = new Ajv2020({ strict: false });
const list = (next: unknown) => ({
  $defs: { node: { type: 'object', properties: { v: { type: 'integer' }, next }, required: ['v', 'next'] } },
  $ref: '#/$defs/node',
});

describe('schemas without a finite value', () => {
  it.each([
    [{ $ref: '#' }, '(root): $ref "#" recurses with no way to end'],
    [{ $defs: { a: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' }, '$ref "#/$defs/a" recurses'],
    [{ $defs: { a: { $ref: '#/$defs/b' }, b: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' }, 'recurses with no way to end'],
    [list({ $ref: '#/$defs/node' }), 'recurses with no way to end'],
    [{ type: 'object', properties: { kids: { type: 'array', items: { $ref: '#' }, minItems: 1 } }, required: ['kids'] }, '/properties/kids/items: $ref "#"'],
    [{ type: 'object', properties: { a: { anyOf: [{ $ref: '#' }] } }, required: ['a'] }, 'recurses'],
    [{ type: 'string', const: 'a', enum: ['b'] }, '/const: the value "a" does not match the rest of the schema (enum'],
    [{ type: 'string', enum: ['a', 1] }, '/enum/1: the value 1 does not match'],
    [{ type: 'object', properties: {}, required: ['x'], additionalProperties: false }, '(root)/required: the required property "x" is not listed'],
    [{ type: 'object', properties: { o: { type: 'object', required: ['y'] } }, required: ['o'] }, '/properties/o/required: the required property "y"'],
    [{ type: 'array', minItems: 3, maxItems: 2 }, '(root): minItems 3 is greater than maxItems 2'],
    [{ type: 'array', prefixItems: [{ type: 'null' }], items: false, minItems: 2 }, 'items: false forbids'],
    [{ type: 'object', properties: { s: { type: 'string', minLength: 3, maxLength: 2 } } }, '/properties/s: minLength 3 is greater than maxLength 2'],
    [{ $ref: '#/$defs/missing' }, '/$ref: $ref "#/$defs/missing" does not resolve'],
    [{ type: 'object', properties: { a: { $ref: 'https://example.com/s.json' } } }, 'does not resolve inside the schema'],
  ])('%j is refused: %s', (schema, message) => {
    expect(unsatisfiableProblem(schema)).toContain(message);
    // The public check refuses it too (and before any compile).
    expect(schemaProblem(schema)).toContain(message);
  });
});

describe('schemas with a finite value', () => {
  it.each([
    [list({ anyOf: [{ $ref: '#/$defs/node' }, { type: 'null' }] }), { v: 1, next: { v: 2, next: null } }],
    [
      { $defs: { node: { type: 'object', properties: { v: { type: 'integer' }, next: { $ref: '#/$defs/node' } }, required: ['v'] } }, $ref: '#/$defs/node' },
      { v: 1 },
    ],
    [{ type: 'object', properties: { kids: { type: 'array', items: { $ref: '#' } } }, required: ['kids'] }, { kids: [{ kids: [] }] }],
    [{ type: 'object', properties: { 'a/b': { type: 'string' }, c: { $ref: '#/properties/a~1b' } }, required: ['c'] }, { c: 'x' }],
    [{ type: ['string', 'null'], enum: ['a', null] }, null],
    [{ type: 'object', properties: {}, required: ['x'], additionalProperties: { type: 'string' } }, { x: 'y' }],
    [{ type: 'array', prefixItems: [{ type: 'null' }], items: false, minItems: 1 }, [null]],
    [{ $defs: { a: { $ref: '#/$defs/a' } }, type: 'string' }, 'unused definitions are never reached'],
  ])('%j passes (ajv accepts %j)', (schema, value) => {
    expect(ajv.validate(schema, value)).toBe(true);
    expect(unsatisfiableProblem(schema)).toBeNull();
  });
});
