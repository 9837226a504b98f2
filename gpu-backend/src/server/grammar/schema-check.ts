// Checks a caller's JSON Schema before XGrammar sees it: first the structural rules the edge holds it to
// (shared/json-schema-walk.ts: well-typed keywords, only keywords XGrammar 0.1.27 enforces, depth), in the
// same words; then what needs the backend: the 2020-12 meta-schema (via ajv), integer bounds XGrammar gets
// wrong, patterns it would emit unescaped, and schemas without a finite value. XGrammar silently ignores
// keywords it does not know (uniqueItems, not, if/then, ...), which would let outputs through that the schema
// forbids; those are refused by name.

import Ajv2020 from 'ajv/dist/2020';
import { mapSubschemas, problemText, type StructureRules, structuralProblem, subschemas } from '../../../../shared/json-schema-walk';
import { integerBoundsOf, lowerIntegerBounds } from './integer-bounds';
import { patternProblem } from './json-string-safety';
import { unsatisfiableProblem } from './schema-satisfiable';

const BACKEND_RULES: StructureRules = {
  // `nullable` reaches here only from a caller that skipped the edge; XGrammar would ignore it.
  extraAnnotations: [],
  // items: false after prefixItems is the usual closed tuple; satisfiability refuses a false that must match.
  falseSchemas: true,
  // Work is bounded by the grammar text's size and the compile's CPU time (grammar-checker.ts).
  maxNodes: undefined,
  // Callers that skip the edge send 2020-12 tuples (prefixItems); the edge rewrites draft-07 ones.
  rewritesTuples: false,
};

const ajv = new Ajv2020({ strict: false, validateFormats: false });
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Null when XGrammar can enforce `schema`; otherwise why not, naming where. */
export function schemaProblem(schema: unknown): string | null {
  const structural = structuralProblem(schema, BACKEND_RULES);
  if (structural) return problemText(structural);
  return metaSchemaProblem(schema) ?? engineProblem(schema) ?? unsatisfiableProblem(schema);
}

function metaSchemaProblem(schema: unknown): string | null {
  // `$schema` is an annotation here (zod-to-json-schema writes draft-07's URI); checked against 2020-12, which
  // ajv would otherwise try to resolve and throw on.
  const checked = isObject(schema) ? { ...schema } : schema;
  if (checked !== schema) delete (checked as { $schema?: unknown }).$schema;
  let valid: boolean;
  try {
    valid = ajv.validateSchema(checked as object) as boolean;
  } catch (error) {
    return `not a valid JSON Schema: ${(error as Error).message}`;
  }
  if (valid) return null;
  const error = ajv.errors?.[0];
  return `not a valid JSON Schema: ${error?.instancePath || '(root)'} ${error?.message ?? ''}`.trim();
}

/** Integer bounds and patterns the grammar engine would get wrong (see integer-bounds.ts, json-string-safety.ts). */
function engineProblem(schema: unknown): string | null {
  for (const { schema: node, path } of subschemas(schema)) {
    if (!isObject(node)) continue;
    const bounds = integerBoundsOf(node);
    if (bounds.kind === 'refused') return `${path || '(root)'}: ${bounds.why}`;
    const problem = typeof node.pattern === 'string' ? patternProblem(node.pattern) : null;
    if (problem) return `${path}/pattern: ${problem}; the grammar engine would emit it unescaped`;
  }
  return null;
}

/** The schema XGrammar compiles for a checked one: integer bounds lowered (see integer-bounds.ts). */
export function lowerSchema(schema: unknown): unknown {
  if (!isObject(schema)) return schema;
  return lowerIntegerBounds(mapSubschemas(schema, lowerSchema));
}
