// One set of messages: a structural problem in a caller's schema reads the same from the edge (its 400,
// naming the field) and from the backend (its schema check, for callers that skip the edge).

import { describe, expect, it } from 'vitest';
import { HttpError } from '../shared/http-error';
import { checkJsonSchema } from '../edge/src/tools/json-schema-check';
import { schemaProblem } from '../gpu-backend/src/server/grammar/schema-check';

function edgeMessage(schema: Record<string, unknown>): string | null {
  try {
    checkJsonSchema(schema, 'p');
    return null;
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    return error.message;
  }
}

describe('edge and backend schema checks', () => {
  it.each([
    [{ type: 'object', properties: { a: { type: 'string', not: { const: 'x' } } } }],
    [{ oneOf: [{ type: 'string' }, { type: 'integer' }] }],
    [{ type: 'strng' }],
    [{ type: 'string', format: 'int32' }],
    [{ type: 'string', pattern: '([a-z' }],
    [{ enum: [] }],
    [{ type: 'string', minLength: 5, maxLength: 2 }],
    [{ type: 'object', properties: { a: { $ref: 'https://example.com/s.json' } } }],
  ])('%j: the same message on both sides', (schema) => {
    const backend = schemaProblem(schema);
    expect(backend).not.toBeNull();
    expect(edgeMessage(schema)).toBe(`Invalid JSON Schema in 'p' at ${backend}`);
  });

  it('differs only where the rules do: nullable and tuples (the edge rewrites them) and other false schemas (the edge refuses them)', () => {
    expect(edgeMessage({ type: 'string', nullable: true })).toBeNull();
    expect(schemaProblem({ type: 'string', nullable: true })).toBe('/nullable: the keyword "nullable" is not enforced by the grammar engine');
    // A closed 2020-12 tuple passes both (the edge sends it on as maxItems); a false property only the backend's.
    const closed = { type: 'array', prefixItems: [{ type: 'null' }], items: false };
    expect(schemaProblem(closed)).toBeNull();
    expect(edgeMessage(closed)).toBeNull();
    const absent = { type: 'object', properties: { a: false } };
    expect(schemaProblem(absent)).toBeNull();
    expect(edgeMessage(absent)).toContain('/properties/a: a false schema');
    // zod 3's tuples: the edge sends them on as prefixItems; a caller skipping the edge is told to.
    const draft07 = { type: 'array', items: [{ type: 'string' }], additionalItems: false };
    expect(edgeMessage(draft07)).toBeNull();
    expect(schemaProblem(draft07)).toContain('use prefixItems');
  });
});
