// The pure parts of the grammar path: the keyword allowlist, integer-bound lowering, the tool-call array
// schema, and the EBNF narrowing of JSON string characters (checked against ajv and JSON.parse, not itself).

import Ajv2020 from 'ajv/dist/2020';
import { describe, expect, it } from 'vitest';
import { integerBoundsOf, lowerIntegerBounds } from './integer-bounds';
import { grammarSourceOf } from './grammar-source';
import { patternProblem, restrictStringCharacters } from './json-string-safety';
import { lowerSchema, schemaProblem } from './schema-check';

const ajv = new Ajv2020({ strict: false });

describe('integer bounds', () => {
  it.each([
    [{ type: 'integer', minimum: -5, maximum: 40 }],
    [{ type: 'integer', exclusiveMinimum: 2, exclusiveMaximum: 5 }],
    [{ type: 'integer', minimum: 0.5, maximum: 7.5 }],
    [{ type: 'integer', minimum: 0, maximum: 120, exclusiveMaximum: 100 }],
  ])('the lowered enum of %j holds exactly the integers the schema accepts', (schema) => {
    const lowered = lowerIntegerBounds(schema);
    const values = new Set(lowered.enum as number[]);
    const validate = ajv.compile(schema);
    for (let value = -200; value <= 200; value++) expect(values.has(value)).toBe(validate(value));
  });

  it('nullable bounded integers keep their other type, with its own keywords', () => {
    const lowered = lowerIntegerBounds({ type: ['integer', 'string'], minimum: 1, maximum: 3, maxLength: 2, description: 'd' });
    expect(lowered).toEqual({ anyOf: [{ enum: [1, 2, 3] }, { type: 'string', maxLength: 2, description: 'd' }] });
  });

  it('refuses bounds it cannot enforce, keeps a lone minimum of 0 or 1', () => {
    expect(integerBoundsOf({ type: 'number', maximum: 1 }).kind).toBe('refused');
    expect(integerBoundsOf({ type: 'integer', minimum: -100 }).kind).toBe('refused');
    expect(integerBoundsOf({ type: 'integer', maximum: 10 }).kind).toBe('refused');
    expect(integerBoundsOf({ type: 'integer', minimum: 0, maximum: 5000 }).kind).toBe('refused');
    expect(integerBoundsOf({ type: 'integer', minimum: 4, maximum: 3 }).kind).toBe('refused');
    expect(integerBoundsOf({ type: 'integer', exclusiveMinimum: 0 })).toEqual({ kind: 'lower', low: 1 });
    expect(lowerSchema({ type: 'object', properties: { n: { type: 'integer', minimum: 1 } } })).toEqual({
      type: 'object',
      properties: { n: { type: 'integer', minimum: 1 } },
    });
  });
});

describe('schema check', () => {
  it('finds refused keywords at any depth and names where', () => {
    expect(schemaProblem({ type: 'object', properties: { a: { type: 'array', items: { anyOf: [{ type: 'string', not: { const: 'x' } }] } } } })).toBe(
      '/properties/a/items/anyOf/0/not: the keyword "not" is not enforced by the grammar engine',
    );
    expect(schemaProblem({ type: 'object', properties: { a: { type: 'string', title: 'A', description: 'd', default: 'x' } }, required: ['a'] })).toBeNull();
    // zod-to-json-schema (the openai client's zodResponseFormat) names draft-07: an annotation, not a crash.
    expect(schemaProblem({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' })).toBeNull();
    // The shared structural rules speak first, in the edge's words; ajv's meta-schema catches what they leave.
    expect(schemaProblem({ type: 'strin' })).toBe('/type: unknown type "strin"; use one of string, number, integer, boolean, object, array, null');
    expect(schemaProblem({ type: 'string', title: 5 })).toMatch(/^not a valid JSON Schema: \/title /);
  });

  it('tool calls: an array of {name: const, arguments: parameters}, one element unless parallel', () => {
    const spec = {
      type: 'tool_calls',
      mode: 'required',
      tools: [
        { name: 'f', parameters: { properties: { x: { type: 'boolean' } } } },
        { name: 'g', parameters: { type: 'object' } },
      ],
      parallel: false,
    } as const;
    const built = grammarSourceOf({ ...spec, tools: [...spec.tools] });
    if (!built.ok) throw new Error(built.message);
    const validate = ajv.compile(JSON.parse(built.source.schema));
    expect(validate([{ name: 'f', arguments: { x: true } }])).toBe(true);
    expect(validate([{ name: 'g', arguments: {} }])).toBe(true);
    expect(validate([{ name: 'f', arguments: 3 }])).toBe(false); // parameters without a type are an object
    expect(validate([{ name: 'h', arguments: {} }])).toBe(false);
    expect(validate([])).toBe(false);
    expect(
      validate([
        { name: 'g', arguments: {} },
        { name: 'g', arguments: {} },
      ]),
    ).toBe(false);
    expect(built.source.toolCalls).toBe('required');
  });

  it('tool parameters keep their own $refs: "#" and "#/$defs/..." mean the parameters, not the array around them', () => {
    const tree = {
      type: 'object',
      $defs: { leaf: { type: 'string', maxLength: 3 } },
      properties: { name: { $ref: '#/$defs/leaf' }, kids: { type: 'array', items: { $ref: '#' }, maxItems: 2 } },
      required: ['name', 'kids'],
    };
    const built = grammarSourceOf({
      type: 'tool_calls',
      mode: 'required',
      tools: [
        { name: 't', parameters: tree },
        { name: 'u', parameters: tree },
      ],
      parallel: true,
    });
    if (!built.ok) throw new Error(built.message);
    // The independent reference: ajv, on the parameters alone and on the array the grammar is built from.
    const value = { name: 'a', kids: [{ name: 'b', kids: [] }] };
    expect(ajv.validate(tree, value)).toBe(true);
    const validate = ajv.compile(JSON.parse(built.source.schema));
    expect(
      validate([
        { name: 't', arguments: value },
        { name: 'u', arguments: value },
      ]),
    ).toBe(true);
    expect(validate([{ name: 't', arguments: { name: 'a', kids: [{ name: 'toolong', kids: [] }] } }])).toBe(false);
    expect(validate([{ name: 't', arguments: { name: 'a', kids: [{ kids: [] }] } }])).toBe(false);
  });

  it('refuses tool parameters without a finite value, naming the tool', () => {
    const built = grammarSourceOf({ type: 'tool_calls', mode: 'auto', tools: [{ name: 'f', parameters: { $ref: '#' } }], parallel: false });
    expect(built).toEqual({ ok: false, message: expect.stringContaining('tools[0].parameters: (root): $ref "#" recurses') });
  });
});

describe('JSON string safety', () => {
  it('refuses character classes beyond ASCII (XGrammar matched [а-я] against "@" and refused "ж")', () => {
    expect(schemaProblem({ type: 'string', pattern: '^[а-я]{1,3}$' })).toContain('holds characters beyond ASCII');
    expect(schemaProblem({ type: 'string', pattern: '^[\\u0430-\\u044f]$' })).toContain('holds characters beyond ASCII');
    expect(schemaProblem({ type: 'string', pattern: '^ж[a-z]+$' })).toBeNull();
  });

  it('narrows negated and any-character classes, never string literals or positive classes', () => {
    const ebnf = 'root ::= "\\"[^a]\\"" | "\\"" [^a] [\\0-\\U0010ffff] ["\\\\/bfnrt] "\\""  # [^b] in a comment';
    expect(restrictStringCharacters(ebnf)).toBe(
      'root ::= "\\"[^a]\\"" | "\\"" [^a\\"\\\\\\0-\\x1f] [^\\"\\\\\\0-\\x1f] ["\\\\/bfnrt] "\\""  # [^b] in a comment',
    );
  });

  it.each([
    ['^[a-z]{2,4}-[0-9]$', null],
    ['^[#-[]+$', null],
    ['^[ -~]+$', 'class [ -~]'],
    ['^[a"]$', 'class [a"]'],
    ['^[\\\\x]$', 'class [\\\\x]'],
    ['^[\\x01-a]$', 'class [\\x01-a]'],
    ['^\\s+$', '\\s'],
    ['^\\W$', '\\W'],
  ])('pattern %s: %s', (pattern, problem) => {
    const found = patternProblem(pattern);
    if (problem === null) expect(found).toBeNull();
    else expect(found).toContain(problem);
  });
});
