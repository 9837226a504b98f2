// toGrammarSchema: OpenAPI's nullable becomes a null type only where a schema stands, never in a
// properties map (a property may be called "nullable").

import { describe, expect, it } from 'vitest';
import { checkJsonSchema, toGrammarSchema } from './json-schema-check';

describe('toGrammarSchema', () => {
  it('adds null to type and enum of nullable schemas, at any depth, and drops nullable and $schema', () => {
    const schema = {
      $schema: 'http://json-schema.org/draft-07/schema#',
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
    expect(toGrammarSchema(schema)).toEqual({
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
