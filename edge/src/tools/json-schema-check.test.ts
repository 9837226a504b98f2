// checkJsonSchema: the shared rules under the edge's options, as 400s and 413s naming the field.
// toGrammarSchema: OpenAPI's nullable becomes a null type only where a schema stands, never in a
// properties map (a property may be called "nullable").

import { describe, expect, it } from 'vitest';
import { HttpError } from '../../../shared/http-error';
import { checkJsonSchema, toGrammarSchema } from './json-schema-check';

function refusal(schema: Record<string, unknown>): HttpError | null {
  try {
    checkJsonSchema(schema, 'p');
    return null;
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw error;
  }
}

describe('checkJsonSchema', () => {
  it('refuses with a 400 naming the field and the path, in the shared words', () => {
    expect(refusal({ type: 'object', properties: { a: { type: 'array', items: { uniqueItems: true } } } })).toMatchObject({
      status: 400,
      param: 'p',
      message: `Invalid JSON Schema in 'p' at /properties/a/items/uniqueItems: the keyword "uniqueItems" is not enforced by the grammar engine`,
    });
  });

  it('keeps its own rules: nullable passes (toGrammarSchema rewrites it), false schemas do not, 20 000 subschemas at most', () => {
    expect(refusal({ type: 'string', nullable: true })).toBeNull();
    expect(refusal({ type: 'object', properties: { a: false }, additionalProperties: false })?.message).toContain('/properties/a: a false schema');
    // The smallest subschemas ({}, 3 characters each) reach the bound under MAX_SCHEMA_CHARS.
    const wide = (count: number) => ({ anyOf: Array.from({ length: count }, () => ({})) });
    expect(refusal(wide(19_999))).toBeNull();
    expect(refusal(wide(20_000))).toMatchObject({ status: 413, param: 'p', message: expect.stringContaining('more than 20000 subschemas') });
  });

  it('answers 413 for a schema nested too deep', () => {
    let deep: Record<string, unknown> = { type: 'string' };
    for (let level = 0; level < 40; level++) deep = { type: 'array', items: deep };
    expect(refusal(deep)).toMatchObject({ status: 413, message: expect.stringContaining('nested deeper than 32 levels') });
  });
});

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

describe('tuples', () => {
  it('become prefixItems, their additionalItems items, and a closed tuple a maxItems of its length', () => {
    const closed = { type: 'array', items: [{ type: 'string' }, { type: 'integer' }], additionalItems: false };
    expect(toGrammarSchema(closed)).toEqual({ type: 'array', prefixItems: [{ type: 'string' }, { type: 'integer' }], maxItems: 2 });
    const rest = { type: 'object', properties: { row: { type: 'array', items: [{ type: 'string', nullable: true }], additionalItems: { type: 'boolean' } } } };
    expect(toGrammarSchema(rest)).toEqual({
      type: 'object',
      properties: { row: { type: 'array', prefixItems: [{ type: ['string', 'null'] }], items: { type: 'boolean' } } },
    });
    // What zod 3 writes (openai's zodResponseFormat for z.tuple) passes the check; a problem inside is named where the caller wrote it.
    expect(() => checkJsonSchema({ type: 'array', items: [{ type: 'string' }], minItems: 1, maxItems: 1 }, 'schema')).not.toThrow();
    expect(() => checkJsonSchema({ type: 'array', items: [{ type: 'strin' }] }, 'schema')).toThrow(/\/items\/0.*unknown type "strin"/);
    expect(() => checkJsonSchema({ type: 'array', items: [] }, 'schema')).toThrow(/\/items: items must be a non-empty array/);
    // Mixed spellings are refused; a looser maxItems beside a closed tuple is capped at its length.
    expect(() => checkJsonSchema({ type: 'array', prefixItems: [{ type: 'string' }], items: [{ type: 'integer' }] }, 'schema')).toThrow(
      /\/items: items as a list .* cannot stand beside prefixItems/,
    );
    expect(toGrammarSchema({ type: 'array', items: [{ type: 'string' }], additionalItems: false, maxItems: 5 })).toEqual({
      type: 'array',
      prefixItems: [{ type: 'string' }],
      maxItems: 1,
    });
    // 2020-12's closed tuple (items: false after prefixItems) says the same as maxItems, and so does items: false alone.
    const closed2020 = { type: 'array', prefixItems: [{ type: 'string' }, { type: 'null' }], items: false, maxItems: 4 };
    expect(() => checkJsonSchema(closed2020, 'schema')).not.toThrow();
    expect(toGrammarSchema(closed2020)).toEqual({ type: 'array', prefixItems: [{ type: 'string' }, { type: 'null' }], maxItems: 2 });
    expect(toGrammarSchema({ type: 'array', items: false })).toEqual({ type: 'array', maxItems: 0 });
    // A reused subschema referenced by its path through a draft-07 tuple still resolves after the rewrite.
    const reused = {
      type: 'object',
      properties: { pair: { type: 'array', items: [{ type: 'string', maxLength: 3 }, { type: 'integer' }] }, again: { $ref: '#/properties/pair/items/0' } },
    };
    checkJsonSchema(reused, 'schema');
    expect((toGrammarSchema(reused) as { properties: { again: unknown } }).properties.again).toEqual({ $ref: '#/properties/pair/prefixItems/0' });
    // A property that is itself called "items" is not a tuple's list.
    const named = { type: 'object', properties: { items: { type: 'string' }, copy: { $ref: '#/properties/items' } } };
    expect(toGrammarSchema(named)).toEqual(named);
    // additionalItems means something only beside a list of items.
    expect(() => checkJsonSchema({ type: 'array', items: { type: 'string' }, additionalItems: false }, 'schema')).toThrow(/"additionalItems" is not enforced/);
  });
});
