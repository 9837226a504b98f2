// withNullableTypes: OpenAPI's nullable becomes a null type only where a schema stands, never in a
// properties map (a property may be called "nullable").

import { describe, expect, it } from 'vitest';
import { checkJsonSchema, withNullableTypes } from './json-schema-check';

describe('withNullableTypes', () => {
  it('adds null to type and enum of nullable schemas, at any depth, and drops the keyword', () => {
    const schema = {
      type: 'object',
      properties: {
        nullable: { type: 'boolean' },
        n: { type: 'number', nullable: true },
        e: { type: 'string', enum: ['a'], nullable: true },
        list: { type: 'array', items: { type: ['integer'], nullable: true } },
        either: { anyOf: [{ $ref: '#/$defs/x' }, { type: 'string', nullable: false }] },
      },
      $defs: { x: { type: 'object', properties: {}, nullable: true } },
    };
    checkJsonSchema(schema, 'p');
    expect(withNullableTypes(schema)).toEqual({
      type: 'object',
      properties: {
        nullable: { type: 'boolean' },
        n: { type: ['number', 'null'] },
        e: { type: ['string', 'null'], enum: ['a', null] },
        list: { type: 'array', items: { type: ['integer', 'null'] } },
        either: { anyOf: [{ $ref: '#/$defs/x' }, { type: 'string' }] },
      },
      $defs: { x: { type: ['object', 'null'], properties: {} } },
    });
  });
});
