// A validated GrammarSpec turned into what XGrammar compiles: a JSON Schema text plus how the output is framed.
// Its `key` (the exact text) names the compiled grammar in every cache: the same spec compiles once.
//
// JSON is one line with ", " and ": " separators (json.dumps' default, what Mistral's tool calls use) and no
// free whitespace: XGrammar's default allows unbounded whitespace, on which a random model loops forever.
// Tool calls (Mistral v3): [TOOL_CALLS], then " " + a JSON array of {"name", "arguments"} objects, then EOS,
// as mistral-common renders a call (the "id" of past calls is left to the edge).

import { z } from 'zod';
import type { GrammarSpec } from '../../../../shared/protocol';
import { lowerSchema, schemaProblem } from './schema-check';

export interface GrammarSource {
  /** The JSON Schema XGrammar compiles (exact text; property order is output order). */
  schema: string;
  /** false: properties beyond the schema's are allowed (json_object); true: only the listed ones. */
  strict: boolean;
  /** Tool calls: the [TOOL_CALLS] control id comes first ('required': forced; 'auto': the model's choice). */
  toolCalls: 'required' | 'auto' | null;
  /** Cache key: everything above. */
  key: string;
}

export type SourceResult = { ok: true; source: GrammarSource } | { ok: false; message: string };

/** Bounds checked before any compile work: a schema this large is refused as too large (413). */
export const MAX_GRAMMAR_TEXT = 64 * 1024;
export const MAX_TOOLS = 128;
const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

const jsonObject = z.record(z.string(), z.unknown());
export const GrammarSpecSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('json_object') }),
  z.object({ type: z.literal('json_schema'), schema: jsonObject }),
  z.object({
    type: z.literal('tool_calls'),
    mode: z.enum(['required', 'auto']),
    tools: z
      .array(z.object({ name: z.string().regex(TOOL_NAME, 'must be 1-64 letters, digits, _ or -'), parameters: jsonObject }))
      .min(1)
      .max(MAX_TOOLS),
    parallel: z.boolean(),
  }),
]);

function source(schema: unknown, strict: boolean, toolCalls: GrammarSource['toolCalls']): GrammarSource {
  const text = JSON.stringify(schema);
  return { schema: text, strict, toolCalls, key: JSON.stringify([text, strict, toolCalls]) };
}

/** Keywords whose values are data, never schemas: a "$ref" key inside them is not a reference. */
const DATA_KEYWORDS = new Set(['const', 'enum', 'default', 'examples']);

/** `schema` with each local $ref ("#", "#/...") moved under `base`, where the schema itself is placed. */
function rebaseRefs(schema: unknown, base: string): unknown {
  if (Array.isArray(schema)) return schema.map((item) => rebaseRefs(item, base));
  if (typeof schema !== 'object' || schema === null) return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([keyword, value]) => {
      if (keyword === '$ref' && typeof value === 'string') return [keyword, value === '#' ? base : `${base}${value.slice(1)}`];
      return [keyword, DATA_KEYWORDS.has(keyword) ? value : rebaseRefs(value, base)];
    }),
  );
}

/**
 * The array of calls: each element names one tool and carries arguments matching its parameters. Parameters
 * that use $ref are placed under the array's $defs with their references rebased, since "#" inside them means
 * the parameters, not the array around them.
 */
function toolCallsSchema(spec: Extract<GrammarSpec, { type: 'tool_calls' }>): unknown {
  const defs: Record<string, unknown> = {};
  const calls = spec.tools.map((tool, index) => {
    let parameters = lowerSchema('type' in tool.parameters ? tool.parameters : { ...tool.parameters, type: 'object' });
    if (JSON.stringify(tool.parameters).includes('"$ref"')) {
      const base = `#/$defs/tool_${index}`;
      defs[`tool_${index}`] = rebaseRefs(parameters, base);
      parameters = { $ref: base };
    }
    return { type: 'object', properties: { name: { const: tool.name }, arguments: parameters }, required: ['name', 'arguments'] };
  });
  const array = { type: 'array', items: calls.length === 1 ? calls[0] : { anyOf: calls }, minItems: 1, ...(spec.parallel ? {} : { maxItems: 1 }) };
  return Object.keys(defs).length > 0 ? { ...array, $defs: defs } : array;
}

/** Checks a spec (already shaped by GrammarSpecSchema) and builds its source; the message names the problem. */
export function grammarSourceOf(spec: GrammarSpec): SourceResult {
  if (spec.type === 'json_object') return { ok: true, source: source({ type: 'object' }, false, null) };
  if (spec.type === 'json_schema') {
    const problem = schemaProblem(spec.schema);
    return problem ? { ok: false, message: `schema: ${problem}` } : { ok: true, source: source(lowerSchema(spec.schema), true, null) };
  }
  const names = new Set<string>();
  for (const [index, tool] of spec.tools.entries()) {
    if (names.has(tool.name)) return { ok: false, message: `tools[${index}].name: "${tool.name}" is listed twice` };
    names.add(tool.name);
    const problem = schemaProblem(tool.parameters);
    if (problem) return { ok: false, message: `tools[${index}].parameters: ${problem}` };
  }
  return { ok: true, source: source(toolCallsSchema(spec), true, spec.mode) };
}
