// The edge's check of a caller's JSON Schema before it reaches the backend's grammar engine (XGrammar): the
// shared structural rules (shared/json-schema-walk.ts), so the caller learns the exact field here and in the
// same words the backend would use; the backend still compiles and may refuse more (numeric bounds, patterns),
// which the edge maps onto the field.

import { HttpError, badRequest } from '../../../shared/http-error';
import { mapSubschemas, problemText, type StructureRules, structuralProblem } from '../../../shared/json-schema-walk';

/** The backend refuses grammars over 64 KiB as too large; one schema over it cannot fit. */
export const MAX_SCHEMA_CHARS = 64 * 1024;

const EDGE_RULES: StructureRules = {
  // toGrammarSchema rewrites OpenAPI's `nullable` into `type` before the backend sees it.
  extraAnnotations: ['nullable'],
  falseSchemas: false,
  // The walk runs on the worker's CPU budget; the backend bounds its work by grammar size and compile time.
  maxNodes: 20_000,
  // toGrammarSchema rewrites them into prefixItems and maxItems (tuplesForGrammar).
  rewritesTuples: true,
};

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Throws a 400 (or a 413 when too large) naming `param` when `schema` is not a JSON Schema the engine can enforce. */
export function checkJsonSchema(schema: Record<string, unknown>, param: string): void {
  if (JSON.stringify(schema).length > MAX_SCHEMA_CHARS) {
    throw new HttpError(413, 'invalid_request', `The JSON Schema in '${param}' is larger than ${MAX_SCHEMA_CHARS} characters.`, param);
  }
  const problem = structuralProblem(schema, EDGE_RULES);
  if (problem?.tooLarge) throw new HttpError(413, 'invalid_request', `The JSON Schema in '${param}' is too large at ${problemText(problem)}.`, param);
  if (problem) throw badRequest(`Invalid JSON Schema in '${param}' at ${problemText(problem)}`, param);
}

/**
 * The schema as the backend gets it: OpenAPI's `nullable: true` (what the openai client's zodResponseFormat
 * writes for `.nullable()`) spelled as JSON Schema, null added to `type` (and to `enum`), since the grammar
 * engine ignores `nullable` and a nullable field could never be null; and without `$schema` (an annotation;
 * zodResponseFormat writes draft-07's, which the backend's 2020-12 meta-schema check cannot load).
 */
export function toGrammarSchema(schema: unknown): unknown {
  // Recursive: only for schemas checkJsonSchema passed (at most MAX_SCHEMA_DEPTH levels).
  return nullableAsType(refsIntoTuples(tuplesForGrammar(schema), schema));
}

function nullableAsType(schema: unknown): unknown {
  if (!isObject(schema)) return schema;
  const out = mapSubschemas(schema, nullableAsType);
  delete out.nullable;
  delete out.$schema;
  if (schema.nullable !== true) return out;
  if (typeof out.type === 'string') out.type = [out.type, 'null'];
  else if (Array.isArray(out.type) && !out.type.includes('null')) out.type = [...(out.type as unknown[]), 'null'];
  if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...(out.enum as unknown[]), null];
  return out;
}

/**
 * Draft-07 tuples (`items` as an array, `additionalItems`), which the openai client's zodResponseFormat writes
 * for z.tuple under zod 3, in 2020-12's words: `prefixItems`, and `items` for what may follow. A closed tuple
 * (draft-07's `additionalItems: false`, 2020-12's `items: false`) caps maxItems at its length, which says the
 * same without a false schema. The check reads them as written (EDGE_RULES.rewritesTuples); the backend only
 * ever sees this form.
 */
function tuplesForGrammar(schema: unknown): unknown {
  if (!isObject(schema)) return schema;
  const out = mapSubschemas(schema, tuplesForGrammar);
  if (Array.isArray(out.items)) {
    const { items, additionalItems, ...rest } = out;
    const tuple: Record<string, unknown> = { ...rest, prefixItems: items };
    if (isObject(additionalItems)) tuple.items = additionalItems;
    else if (additionalItems === false) closeAt(tuple, items.length);
    return tuple;
  }
  if (out.items === false) {
    delete out.items;
    closeAt(out, Array.isArray(out.prefixItems) ? out.prefixItems.length : 0);
  }
  return out;
}

/**
 * `$ref`s written against the caller's schema, re-pointed into the rewritten one: a path through a draft-07
 * tuple's `items/N` now leads through `prefixItems/N` (a reused subschema is referenced by its path, as
 * zod-to-json-schema writes it). Every other segment stays as written.
 */
function refsIntoTuples(schema: unknown, original: unknown): unknown {
  if (!isObject(schema)) return schema;
  const out = mapSubschemas(schema, (child) => refsIntoTuples(child, original));
  if (typeof out.$ref === 'string' && out.$ref.startsWith('#/')) out.$ref = retargeted(out.$ref, original);
  return out;
}

function retargeted(ref: string, original: unknown): string {
  const segments = ref.slice(2).split('/');
  let node: unknown = original;
  const out = segments.map((segment, i) => {
    let token: string;
    try {
      token = decodeURIComponent(segment).replace(/~1/g, '/').replace(/~0/g, '~');
    } catch {
      return segment;
    }
    const intoTuple = token === 'items' && isObject(node) && Array.isArray(node.items) && /^\d+$/.test(segments[i + 1] ?? '');
    node = isObject(node) || Array.isArray(node) ? (node as Record<string, unknown>)[token] : undefined;
    return intoTuple ? 'prefixItems' : segment;
  });
  return `#/${out.join('/')}`;
}

/** At most `length` items, also where a looser maxItems was written beside them. */
function closeAt(tuple: Record<string, unknown>, length: number): void {
  tuple.maxItems = Math.min(length, (tuple.maxItems as number | undefined) ?? length);
}
