// The one walk over a caller's JSON Schema: every subschema with its JSON Pointer path, and the structural
// rules both sides hold a schema to, with one message per problem. The edge's check is these rules alone; the
// backend's schema-check runs them first, then adds what needs the backend (ajv's meta-schema, integer bounds,
// patterns the grammar engine writes unsafely, satisfiability).

import { ANNOTATION_KEYWORDS, ENFORCED_FORMATS, ENFORCED_KEYWORDS } from './json-schema-keywords';

type Schema = Record<string, unknown>;
const isObject = (value: unknown): value is Schema => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Keywords whose value is one schema, a list of schemas, or a map of named schemas. `items` is a list in a
 * draft-07 tuple, with `additionalItems` for what follows; the rules refuse both unless rewritesTuples.
 */
const SCHEMA_VALUES = ['items', 'additionalItems', 'additionalProperties', 'unevaluatedProperties'];
const SCHEMA_LISTS = ['anyOf', 'prefixItems'];
const SCHEMA_MAPS = ['properties', '$defs', 'definitions'];
/** Of SCHEMA_VALUES, those whose `false` is the ordinary "nothing more" rather than a schema matching nothing. */
const BOOLEAN_OR_SCHEMA = ['additionalItems', 'additionalProperties', 'unevaluatedProperties'];

const isSchemaList = (keyword: string, value: unknown): value is unknown[] => (SCHEMA_LISTS.includes(keyword) || keyword === 'items') && Array.isArray(value);

const TYPES = ['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'];
const COUNTS = ['minLength', 'maxLength', 'minItems', 'maxItems'];
const NUMBERS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'];
const RANGES = [
  ['minLength', 'maxLength'],
  ['minItems', 'maxItems'],
  ['minimum', 'maximum'],
];
/** Why a keyword the engine ignores is refused, where a near keyword does the job. */
const WHY: Record<string, string> = {
  oneOf: 'its exclusivity cannot be enforced; use anyOf',
  allOf: 'the grammar engine cannot intersect schemas; merge them',
};
/** Each level is a grammar rule; deeper schemas are refused before any work. */
export const MAX_SCHEMA_DEPTH = 32;

export interface Subschema {
  schema: unknown;
  /** JSON Pointer from the root ('' for the root itself). */
  path: string;
  /** 0 for the root, one more per keyword crossed. */
  depth: number;
  /** The keyword this subschema is the value (or an element) of; null for the root. */
  keyword: string | null;
}

export function escapePointer(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** A local reference ("#" or "#/..."), resolved inside `root`; undefined when it does not resolve. */
export function resolveLocalRef(root: unknown, ref: string): unknown {
  if (ref !== '#' && !ref.startsWith('#/')) return undefined;
  let target: unknown = root;
  for (const raw of ref.split('/').slice(1)) {
    let part: string;
    try {
      part = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
    } catch {
      return undefined; // a malformed %-escape names nothing
    }
    target = isObject(target) ? target[part] : Array.isArray(target) ? target[Number(part)] : undefined;
    if (target === undefined) return undefined;
  }
  return target;
}

/** The direct subschemas of `parent`, in keyword order, where the keyword's value has its shape. */
function children(parent: Subschema): Subschema[] {
  const found: Subschema[] = [];
  if (!isObject(parent.schema)) return found;
  const depth = parent.depth + 1;
  for (const [keyword, value] of Object.entries(parent.schema)) {
    const at = `${parent.path}/${escapePointer(keyword)}`;
    if (isSchemaList(keyword, value)) for (const [index, schema] of value.entries()) found.push({ schema, path: `${at}/${index}`, depth, keyword });
    else if (SCHEMA_VALUES.includes(keyword)) found.push({ schema: value, path: at, depth, keyword });
    else if (SCHEMA_MAPS.includes(keyword) && isObject(value))
      for (const [name, schema] of Object.entries(value)) found.push({ schema, path: `${at}/${escapePointer(name)}`, depth, keyword });
  }
  return found;
}

/** Every subschema of `root`, parents before children (pre-order); stop early by leaving the loop. */
export function* subschemas(root: unknown): Generator<Subschema> {
  const stack: Subschema[] = [{ schema: root, path: '', depth: 0, keyword: null }];
  while (stack.length > 0) {
    const next = stack.pop() as Subschema;
    yield next;
    const below = children(next);
    for (let index = below.length - 1; index >= 0; index--) stack.push(below[index]);
  }
}

/** `schema` with each direct subschema replaced by `map(subschema)`; keyword and property order kept. */
export function mapSubschemas(schema: Schema, map: (subschema: unknown) => unknown): Schema {
  const out: Schema = {};
  for (const [keyword, value] of Object.entries(schema)) {
    if (isSchemaList(keyword, value)) out[keyword] = value.map(map);
    else if (SCHEMA_VALUES.includes(keyword)) out[keyword] = map(value);
    else if (SCHEMA_MAPS.includes(keyword) && isObject(value)) out[keyword] = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, map(sub)]));
    else out[keyword] = value;
  }
  return out;
}

export interface SchemaProblem {
  /** JSON Pointer of the subschema or keyword at fault ('' for the root). */
  path: string;
  message: string;
  /** Over a size limit (depth, subschema count) rather than wrong: the edge answers 413. */
  tooLarge: boolean;
}

/** Where the two sides differ, each on purpose. */
export interface StructureRules {
  /** Accepted as annotations beyond ANNOTATION_KEYWORDS (the edge: `nullable`, which it rewrites into `type`). */
  extraAnnotations: readonly string[];
  /** Whether `false` may stand as a schema (items: false, a false property); additionalProperties: false always may. */
  falseSchemas: boolean;
  /** The most subschemas walked (the edge's bound on its CPU time); undefined: no bound here. */
  maxNodes: number | undefined;
  /**
   * Whether draft-07 tuples (`items` as a list, `additionalItems` beside it) and `items: false` (a closed
   * 2020-12 tuple) pass where false schemas do not: the edge rewrites them into prefixItems and maxItems.
   */
  rewritesTuples: boolean;
}

/** "/path: message", or "(root): message"; the text both sides show. */
export function problemText(problem: SchemaProblem): string {
  return `${problem.path || '(root)'}: ${problem.message}`;
}

/** The first structural problem of `root` (shallowest first), or null when it has none. */
export function structuralProblem(root: unknown, rules: StructureRules): SchemaProblem | null {
  const annotations = new Set([...ANNOTATION_KEYWORDS, ...rules.extraAnnotations]);
  let nodes = 0;
  for (const subschema of subschemas(root)) {
    const { path, depth } = subschema;
    if (rules.maxNodes !== undefined && ++nodes > rules.maxNodes)
      return { path, message: `the schema has more than ${rules.maxNodes} subschemas`, tooLarge: true };
    if (depth > MAX_SCHEMA_DEPTH) return { path, message: `nested deeper than ${MAX_SCHEMA_DEPTH} levels`, tooLarge: true };
    const problem = nodeProblem(subschema, root, rules, annotations);
    if (problem) return problem;
  }
  return null;
}

function nodeProblem({ schema, path, keyword }: Subschema, root: unknown, rules: StructureRules, annotations: Set<string>): SchemaProblem | null {
  const closesTuple = keyword === 'items' && rules.rewritesTuples;
  if (schema === true || (schema === false && (rules.falseSchemas || closesTuple || BOOLEAN_OR_SCHEMA.includes(keyword as string)))) return null;
  if (schema === false) return { path, message: 'a false schema (nothing allowed) is not supported; leave the property out instead', tooLarge: false };
  if (!isObject(schema)) return { path, message: 'a schema must be a JSON object or a boolean', tooLarge: false };
  for (const name of Object.keys(schema)) {
    if (annotations.has(name)) continue;
    const message =
      rules.rewritesTuples && Array.isArray(schema.items) && (name === 'items' || name === 'additionalItems')
        ? draft07TupleProblem(name, schema)
        : keywordProblem(name, schema[name], root);
    if (message) return { path: `${path}/${escapePointer(name)}`, message, tooLarge: false };
  }
  for (const [low, high] of RANGES) {
    const min = schema[low];
    const max = schema[high];
    if (typeof min === 'number' && typeof max === 'number' && min > max)
      return { path, message: `${low} ${min} is greater than ${high} ${max}`, tooLarge: false };
  }
  return null;
}

function keywordProblem(keyword: string, value: unknown, root: unknown): string | null {
  if (!ENFORCED_KEYWORDS.has(keyword)) return `the keyword "${keyword}" is not enforced by the grammar engine${WHY[keyword] ? ` (${WHY[keyword]})` : ''}`;
  if (keyword === 'type') return typeProblem(value);
  if (keyword === 'format')
    return typeof value === 'string' && ENFORCED_FORMATS.has(value)
      ? null
      : `format ${JSON.stringify(value)} cannot be enforced; supported formats: ${[...ENFORCED_FORMATS].join(', ')}`;
  if (COUNTS.includes(keyword)) return Number.isInteger(value) && (value as number) >= 0 ? null : `${keyword} must be a non-negative integer`;
  if (NUMBERS.includes(keyword)) return Number.isFinite(value) ? null : `${keyword} must be a number`;
  if (keyword === 'pattern') return regexProblem(value);
  if (keyword === 'enum') return Array.isArray(value) && value.length > 0 ? null : 'enum must be a non-empty array';
  if (keyword === 'required')
    return Array.isArray(value) && value.every((name) => typeof name === 'string') ? null : 'required must be an array of property names';
  if (keyword === '$ref')
    return typeof value === 'string' && resolveLocalRef(root, value) !== undefined
      ? null
      : `$ref ${JSON.stringify(value)} does not resolve inside the schema (only "#" and "#/..." references are supported)`;
  if (SCHEMA_MAPS.includes(keyword)) return isObject(value) ? null : `${keyword} must be an object of schemas`;
  if (SCHEMA_LISTS.includes(keyword)) return Array.isArray(value) && value.length > 0 ? null : `${keyword} must be a non-empty array of schemas`;
  if (keyword === 'items' && Array.isArray(value)) return 'items as an array (draft-07 tuples) is not supported; use prefixItems';
  return null;
}

/** `items` as a list and `additionalItems` beside it; their subschemas are walked like any other. */
function draft07TupleProblem(keyword: string, schema: Schema): string | null {
  if (keyword !== 'items') return null;
  if ((schema.items as unknown[]).length === 0) return 'items must be a non-empty array of schemas';
  // Two spellings of the same tuple: which one the caller meant is not for the edge to guess.
  return 'prefixItems' in schema ? 'items as a list (a draft-07 tuple) cannot stand beside prefixItems; use one of them' : null;
}

function typeProblem(value: unknown): string | null {
  const types = Array.isArray(value) ? value : [value];
  if (types.length === 0) return 'type must not be an empty array';
  const unknown = types.find((type) => typeof type !== 'string' || !TYPES.includes(type));
  return unknown === undefined ? null : `unknown type ${JSON.stringify(unknown)}; use one of ${TYPES.join(', ')}`;
}

function regexProblem(value: unknown): string | null {
  if (typeof value !== 'string') return 'a pattern must be a string';
  try {
    new RegExp(value, 'u');
    return null;
  } catch {
    return `${JSON.stringify(value.slice(0, 200))} is not a valid regular expression`;
  }
}
