// A cheap structural check of a caller's JSON Schema before it reaches the backend's grammar engine (XGrammar):
// the schema must be well formed and made only of keywords XGrammar enforces; any other keyword is refused by
// name (XGrammar silently ignores what it does not know, which would let through output the schema forbids).
// The allowlist is the backend's own (shared/json-schema-keywords.ts), so the caller learns the exact field here; the
// backend still compiles and may refuse more (numeric bounds, patterns), which the edge maps onto the field.

import { HttpError, badRequest } from '../../../shared/http-error';
import { ANNOTATION_KEYWORDS, ENFORCED_FORMATS as FORMATS, ENFORCED_KEYWORDS as ENFORCED } from '../../../shared/json-schema-keywords';

/** The backend refuses grammars over 64 KiB as too large; one schema over it cannot fit. */
export const MAX_SCHEMA_CHARS = 64 * 1024;
const MAX_DEPTH = 32;
const MAX_NODES = 20_000;

const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null']);
/** Annotations, plus OpenAPI's `nullable` (rewritten by toGrammarSchema before the backend sees it). */
const ANNOTATIONS = new Set([...ANNOTATION_KEYWORDS, 'nullable']);
const WHY: Record<string, string> = {
  oneOf: 'its exclusivity cannot be enforced; use anyOf',
  allOf: 'the grammar engine cannot intersect schemas; merge them',
};
const COUNTS = ['minLength', 'maxLength', 'minItems', 'maxItems'];
const NUMBERS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'];
const SCHEMA_MAPS = ['properties', '$defs', 'definitions'];
const SCHEMA_LISTS = ['anyOf', 'prefixItems'];
const SCHEMA_VALUES = ['items'];
/** Keywords whose value may be a boolean (allowed or not) or a schema. */
const BOOLEAN_OR_SCHEMA = ['additionalProperties', 'unevaluatedProperties'];

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

class Walk {
  private nodes = 0;

  constructor(
    private readonly root: Record<string, unknown>,
    private readonly param: string,
  ) {}

  fail(path: string, message: string): never {
    throw badRequest(`Invalid JSON Schema in '${this.param}' at ${path || '(root)'}: ${message}`, this.param);
  }

  schema(node: unknown, path: string, depth: number): void {
    if (++this.nodes > MAX_NODES || depth > MAX_DEPTH) {
      throw new HttpError(
        413,
        'invalid_request',
        `The JSON Schema in '${this.param}' is too large (more than ${MAX_NODES} subschemas or ${MAX_DEPTH} levels deep).`,
        this.param,
      );
    }
    if (node === true) return;
    if (node === false) this.fail(path, 'a false schema (nothing allowed) is not supported; leave the property out instead');
    if (!isObject(node)) this.fail(path, 'a schema must be a JSON object');
    for (const [key, value] of Object.entries(node)) this.keyword(key, value, `${path}/${key}`, depth);
    const min = (a: string, b: string) => typeof node[a] === 'number' && typeof node[b] === 'number' && (node[a] as number) > (node[b] as number);
    for (const [low, high] of [
      ['minLength', 'maxLength'],
      ['minItems', 'maxItems'],
      ['minimum', 'maximum'],
    ]) {
      if (min(low, high)) this.fail(path, `${low} is greater than ${high}: no value can match`);
    }
  }

  private keyword(key: string, value: unknown, path: string, depth: number): void {
    if (ANNOTATIONS.has(key)) return;
    if (!ENFORCED.has(key)) this.fail(path, `the keyword "${key}" is not supported: the grammar engine cannot enforce it${WHY[key] ? ` (${WHY[key]})` : ''}`);
    if (key === 'type') return this.type(value, path);
    if (key === 'format') {
      if (typeof value !== 'string' || !FORMATS.has(value))
        this.fail(path, `format ${JSON.stringify(value)} cannot be enforced; supported formats: ${[...FORMATS].join(', ')}`);
    } else if (COUNTS.includes(key)) {
      if (!Number.isInteger(value) || (value as number) < 0) this.fail(path, `${key} must be a non-negative integer`);
    } else if (NUMBERS.includes(key)) {
      if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(path, `${key} must be a number`);
    } else if (key === 'pattern') {
      this.regex(value, path);
    } else if (key === 'enum') {
      if (!Array.isArray(value) || value.length === 0) this.fail(path, 'enum must be a non-empty array');
    } else if (key === 'required') {
      if (!Array.isArray(value) || !value.every((name) => typeof name === 'string')) this.fail(path, 'required must be an array of property names');
    } else if (key === '$ref') {
      this.ref(value, path);
    } else if (SCHEMA_MAPS.includes(key)) {
      if (!isObject(value)) this.fail(path, `${key} must be an object of schemas`);
      for (const [name, sub] of Object.entries(value)) this.schema(sub, `${path}/${name}`, depth + 1);
    } else if (SCHEMA_LISTS.includes(key)) {
      if (!Array.isArray(value) || value.length === 0) this.fail(path, `${key} must be a non-empty array of schemas`);
      value.forEach((sub, i) => this.schema(sub, `${path}/${i}`, depth + 1));
    } else if (SCHEMA_VALUES.includes(key)) {
      if (Array.isArray(value)) this.fail(path, 'items as an array (draft-07 tuples) is not supported; use prefixItems');
      this.schema(value, path, depth + 1);
    } else if (BOOLEAN_OR_SCHEMA.includes(key) && typeof value !== 'boolean') {
      this.schema(value, path, depth + 1);
    }
  }

  private type(value: unknown, path: string): void {
    const types = Array.isArray(value) ? value : [value];
    if (types.length === 0) this.fail(path, 'type must not be an empty array');
    for (const type of types) {
      if (typeof type !== 'string' || !TYPES.has(type)) this.fail(path, `unknown type ${JSON.stringify(type)}; use one of ${[...TYPES].join(', ')}`);
    }
  }

  private regex(value: unknown, path: string): void {
    if (typeof value !== 'string') this.fail(path, 'a pattern must be a string');
    try {
      new RegExp(value, 'u');
    } catch {
      this.fail(path, `${JSON.stringify(value.slice(0, 200))} is not a valid regular expression`);
    }
  }

  /** Only references inside this schema: "#" or a JSON pointer "#/..." that resolves. */
  private ref(value: unknown, path: string): void {
    if (typeof value !== 'string' || (value !== '#' && !value.startsWith('#/'))) {
      this.fail(path, `$ref ${JSON.stringify(value)} is not supported; only references inside the schema ("#/$defs/...") are`);
    }
    let target: unknown = this.root;
    for (const raw of value.split('/').slice(1)) {
      const part = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
      target = isObject(target) ? target[part] : Array.isArray(target) ? target[Number(part)] : undefined;
      if (target === undefined) this.fail(path, `$ref ${JSON.stringify(value)} does not resolve inside the schema`);
    }
  }
}

/** Throws a 400 (or a 413 when too large) naming `param` when `schema` is not a JSON Schema the engine can enforce. */
export function checkJsonSchema(schema: Record<string, unknown>, param: string): void {
  if (JSON.stringify(schema).length > MAX_SCHEMA_CHARS) {
    throw new HttpError(413, 'invalid_request', `The JSON Schema in '${param}' is larger than ${MAX_SCHEMA_CHARS} characters.`, param);
  }
  new Walk(schema, param).schema(schema, '', 0);
}

/**
 * The schema as the backend gets it: OpenAPI's `nullable: true` (what the openai client's zodResponseFormat
 * writes for `.nullable()`) spelled as JSON Schema, null added to `type` (and to `enum`), since the grammar
 * engine ignores `nullable` and a nullable field could never be null; and without `$schema` (an annotation;
 * zodResponseFormat writes draft-07's, which the backend's 2020-12 meta-schema check cannot load).
 */
export function toGrammarSchema(schema: unknown): unknown {
  if (!isObject(schema)) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'nullable' || key === '$schema') continue;
    if (SCHEMA_MAPS.includes(key) && isObject(value)) out[key] = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, toGrammarSchema(sub)]));
    else if (SCHEMA_LISTS.includes(key) && Array.isArray(value)) out[key] = value.map(toGrammarSchema);
    else if (SCHEMA_VALUES.includes(key) || BOOLEAN_OR_SCHEMA.includes(key)) out[key] = toGrammarSchema(value);
    else out[key] = value;
  }
  if (schema.nullable !== true) return out;
  if (typeof out.type === 'string') out.type = [out.type, 'null'];
  else if (Array.isArray(out.type) && !out.type.includes('null')) out.type = [...(out.type as unknown[]), 'null'];
  if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...(out.enum as unknown[]), null];
  return out;
}
