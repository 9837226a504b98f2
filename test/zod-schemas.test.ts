// What `client.chat.completions.parse(zodResponseFormat(...))` sends, for zod 3 and zod 4 schemas of the
// common shapes, passes the edge's check and the backend's, and compiles: zod 4 writes `.int()` as the
// safe-integer range, which the grammar's 15-digit integers always satisfy (integer-bounds.ts).

import { zodResponseFormat } from 'openai/helpers/zod';
import { describe, expect, it } from 'vitest';
import { z as z3 } from 'zod';
import * as z4 from 'zod/v4';
import { checkJsonSchema, toGrammarSchema } from '../edge/src/tools/json-schema-check';
import { grammarSourceOf } from '../gpu-backend/src/server/grammar/grammar-source';
import { fixtureCompilers } from '../gpu-backend/src/server/grammar/test-vocabularies';

function shapes(z: typeof z3 | typeof z4) {
  const zz = z as typeof z4;
  return {
    int: zz.object({ n: zz.number().int() }),
    positiveInt: zz.object({ n: zz.number().int().positive() }),
    nonNegativeInt: zz.object({ n: zz.number().int().nonnegative() }),
    optional: zz.object({ n: zz.number().int().nullable().optional(), s: zz.string().max(8) }),
    nullable: zz.object({ n: zz.number().int().nullable() }),
    enum: zz.object({ color: zz.enum(['red', 'green']), count: zz.number().int() }),
    array: zz.object({ ids: zz.array(zz.number().int()).max(3) }),
    nested: zz.object({ user: zz.object({ id: zz.number().int(), name: zz.string().max(10), tags: zz.array(zz.string().max(4)) }) }),
    // zod 3 writes draft-07 tuples (items as an array); zod 4 prefixItems.
    tuple: zz.object({ pair: zz.tuple([zz.string().max(8), zz.number().int()]) }),
  };
}

const cases = [
  ...Object.entries(shapes(z3)).map(([name, schema]) => [`zod 3 ${name}`, schema] as const),
  ...Object.entries(shapes(z4)).map(([name, schema]) => [`zod 4 ${name}`, schema] as const),
];

describe('zodResponseFormat schemas', () => {
  it.each(cases)('%s passes both checks and compiles', async (_name, schema) => {
    const format = zodResponseFormat(schema as never, 'answer');
    const sent = format.json_schema.schema as Record<string, unknown>;
    expect(() => checkJsonSchema(sent, 'response_format.json_schema.schema')).not.toThrow();
    const built = grammarSourceOf({ type: 'json_schema', schema: toGrammarSchema(sent) as Record<string, unknown> });
    expect(built.ok ? null : built.message).toBeNull();
    if (!built.ok) return;
    const compilers = await fixtureCompilers('v1');
    await expect(compilers.compile(built.source)).resolves.toBeDefined();
  });

  it('zod 4 .int() arrives as the safe-integer range (what the fix is for)', () => {
    const sent = zodResponseFormat(z4.object({ n: z4.number().int() }) as never, 'a').json_schema.schema as { properties: { n: Record<string, unknown> } };
    expect(sent.properties.n).toMatchObject({ minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER });
  });
});
