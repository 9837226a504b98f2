// Checks a caller's JSON Schema before XGrammar sees it: well-formed (the 2020-12 meta-schema, via ajv) and
// made only of keywords XGrammar 0.1.27 enforces. XGrammar silently ignores keywords it does not know
// (uniqueItems, not, if/then, dependentRequired, ...), which would let outputs through that the schema
// forbids; those are refused here by name. The allowlist was checked keyword by keyword against the grammar
// XGrammar generates (a keyword that leaves it unchanged is ignored).

import Ajv2020 from 'ajv/dist/2020';
import { ANNOTATION_KEYWORDS as ANNOTATIONS, ENFORCED_FORMATS, ENFORCED_KEYWORDS as ENFORCED } from '../../../../shared/json-schema-keywords';
import { integerBoundsOf, lowerIntegerBounds } from './integer-bounds';
import { patternProblem } from './json-string-safety';
import { unsatisfiableProblem } from './schema-satisfiable';

const TYPES = new Set(['string', 'integer', 'number', 'boolean', 'null', 'object', 'array']);
const WHY: Record<string, string> = {
  oneOf: 'oneOf (its exclusivity) is not enforced; use anyOf',
  allOf: 'allOf is not enforced; merge the subschemas',
};
/** Deeper schemas are refused before any work (each level is a grammar rule). */
const MAX_DEPTH = 32;

const ajv = new Ajv2020({ strict: false, validateFormats: false });

/** Keywords whose value is a schema, a list of schemas, or a map of schemas. */
const SUBSCHEMA = new Set(['items', 'additionalProperties', 'unevaluatedProperties']);
const SCHEMA_LISTS = new Set(['anyOf', 'prefixItems']);
const SCHEMA_MAPS = new Set(['properties', '$defs', 'definitions']);

/** Null when XGrammar can enforce `schema`; otherwise why not, naming the keyword and where it is. */
export function schemaProblem(schema: unknown): string | null {
  // `$schema` is an annotation here (zod-to-json-schema writes draft-07's URI); checked against 2020-12, which
  // ajv would otherwise try to resolve and throw on.
  const checked = typeof schema === 'object' && schema !== null && !Array.isArray(schema) ? { ...schema } : schema;
  if (checked !== schema) delete (checked as { $schema?: unknown }).$schema;
  let valid: boolean;
  try {
    valid = ajv.validateSchema(checked as object) as boolean;
  } catch (error) {
    return `not a valid JSON Schema: ${(error as Error).message}`;
  }
  if (!valid) {
    const error = ajv.errors?.[0];
    return `not a valid JSON Schema: ${error?.instancePath || '(root)'} ${error?.message ?? ''}`.trim();
  }
  return walk(schema, '', 0) ?? unsatisfiableProblem(schema);
}

function walk(schema: unknown, path: string, depth: number): string | null {
  if (typeof schema === 'boolean') return null;
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return `${path || '(root)'}: a schema must be an object or a boolean`;
  if (depth > MAX_DEPTH) return `${path}: nested deeper than ${MAX_DEPTH} levels`;
  const bounds = integerBoundsOf(schema as Record<string, unknown>);
  if (bounds.kind === 'refused') return `${path || '(root)'}: ${bounds.why}`;
  for (const [keyword, value] of Object.entries(schema)) {
    const at = `${path}/${keyword}`;
    if (ANNOTATIONS.has(keyword)) continue;
    if (!ENFORCED.has(keyword)) return `keyword "${keyword}" at ${at} is not enforced by the grammar engine${WHY[keyword] ? `: ${WHY[keyword]}` : ''}`;
    if (keyword === 'pattern') {
      const problem = patternProblem(String(value));
      if (problem) return `pattern at ${at} ${problem}; the grammar engine would emit it unescaped`;
    }
    if (keyword === 'format' && !ENFORCED_FORMATS.has(String(value))) return `format "${String(value)}" at ${at} is not enforced by the grammar engine`;
    if (keyword === 'type') {
      const types = Array.isArray(value) ? value : [value];
      const unknown = types.find((type) => !TYPES.has(type as string));
      if (unknown !== undefined) return `${at}: unknown type ${JSON.stringify(unknown)}`;
    }
    let problem: string | null = null;
    if (SUBSCHEMA.has(keyword)) problem = walk(value, at, depth + 1);
    else if (SCHEMA_LISTS.has(keyword)) for (const [index, item] of (value as unknown[]).entries()) problem ??= walk(item, `${at}/${index}`, depth + 1);
    else if (SCHEMA_MAPS.has(keyword)) for (const [name, item] of Object.entries(value as object)) problem ??= walk(item, `${at}/${name}`, depth + 1);
    if (problem) return problem;
  }
  return null;
}

/** The schema XGrammar compiles for a checked one: integer bounds lowered (see integer-bounds.ts). */
export function lowerSchema(schema: unknown): unknown {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return schema;
  const lowered: Record<string, unknown> = {};
  for (const [keyword, value] of Object.entries(schema)) {
    if (SUBSCHEMA.has(keyword)) lowered[keyword] = lowerSchema(value);
    else if (SCHEMA_LISTS.has(keyword)) lowered[keyword] = (value as unknown[]).map(lowerSchema);
    else if (SCHEMA_MAPS.has(keyword)) lowered[keyword] = Object.fromEntries(Object.entries(value as object).map(([name, item]) => [name, lowerSchema(item)]));
    else lowered[keyword] = value;
  }
  return lowerIntegerBounds(lowered);
}
