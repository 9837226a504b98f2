// The JSON Schema subset the grammar engine (XGrammar 0.1.27) enforces, held to by the shared walk
// (json-schema-walk.ts) that both the edge's check and the backend's run.
// Found by compiling each keyword with @mlc-ai/web-xgrammar: a keyword that leaves the generated grammar
// unchanged is ignored by the engine, so it is refused rather than silently not enforced.

/** Keywords whose constraint XGrammar builds into the grammar. */
export const ENFORCED_KEYWORDS: ReadonlySet<string> = new Set([
  'type',
  'properties',
  'required',
  'additionalProperties',
  'unevaluatedProperties',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'enum',
  'const',
  'anyOf',
  '$ref',
  '$defs',
  'definitions',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
]);

/** Annotations: no constraint to enforce. */
export const ANNOTATION_KEYWORDS: ReadonlySet<string> = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
]);

/** `format` values XGrammar turns into a grammar (others it ignores). */
export const ENFORCED_FORMATS: ReadonlySet<string> = new Set([
  'date-time',
  'date',
  'time',
  'duration',
  'email',
  'hostname',
  'ipv4',
  'ipv6',
  'uri',
  'uri-reference',
  'uuid',
  'json-pointer',
]);
