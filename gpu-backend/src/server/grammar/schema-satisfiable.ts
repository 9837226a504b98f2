// Which subschemas of a caller's JSON Schema have at least one finite JSON value. XGrammar 0.1.27 compiles a
// schema without one (`{"$ref": "#"}`, $defs that require each other, a required property that strict
// properties forbid, a const outside its enum) into a grammar that either emits output breaking the schema or
// reaches a state that allows no token at all. Such schemas are refused here, naming the path, before any compile.
//
// "Productive" is the least fixpoint of the rules below (as for the nonterminals of a context-free grammar): a
// $ref is productive once its target is, so recursion is accepted exactly when some branch of it can end.
// Grammars are strict (properties not listed are not allowed unless additionalProperties says so).

import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import { escapePointer, resolveLocalRef } from '../../../../shared/json-schema-walk';

type Schema = Record<string, unknown>;
const isObject = (value: unknown): value is Schema => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Keywords that lead from a schema to the subschemas its values may have to match. */
const INSTANCE_CHILDREN = ['items', 'additionalProperties', 'unevaluatedProperties'];
const INSTANCE_LISTS = ['anyOf', 'prefixItems'];
const CHECK_ID = 'https://schema-satisfiable.invalid/root';

interface Node {
  schema: unknown;
  path: string;
}

class Satisfiability {
  /** Reachable subschema objects in pre-order (the first one reported is the shallowest). */
  private readonly nodes: Node[] = [];
  private readonly productive = new Map<unknown, boolean>();
  private validators: Ajv2020 | null = null;
  /** The outcome of each const/enum check (ajv runs once per subschema, not once per pass). */
  private readonly valueChecks = new Map<Schema, string | null>();

  constructor(private readonly root: unknown) {}

  problem(): string | null {
    const refProblem = this.collect(this.root, '');
    if (refProblem) return refProblem;
    for (const { schema } of this.nodes) this.productive.set(schema, false);
    // Children come after their parents in `nodes`, so a reverse pass settles every acyclic part at once;
    // each further pass carries productivity one step further along a $ref cycle.
    for (let changed = true; changed; ) {
      changed = false;
      for (let index = this.nodes.length - 1; index >= 0; index--) {
        const { schema, path } = this.nodes[index];
        if (this.productive.get(schema) || this.localReason(schema, path, true) !== null) continue;
        this.productive.set(schema, true);
        changed = true;
      }
    }
    const stuck = this.nodes.filter(({ schema }) => !this.productive.get(schema));
    if (stuck.length === 0) return null;
    for (const { schema, path } of stuck) {
      const reason = this.localReason(schema, path, false);
      if (reason) return reason;
    }
    const cycle = stuck.find(({ schema }) => isObject(schema) && typeof schema.$ref === 'string') ?? stuck[0];
    const ref = (cycle.schema as Schema).$ref;
    return `${cycle.path || '(root)'}: $ref ${JSON.stringify(ref)} recurses with no way to end (every value would have to contain itself), so no finite value matches`;
  }

  /** Records every reachable subschema; refuses a $ref that does not resolve inside the schema. */
  private collect(schema: unknown, path: string): string | null {
    if (!isObject(schema) || this.productive.has(schema)) return null;
    this.productive.set(schema, false);
    this.nodes.push({ schema, path });
    for (const [keyword, value] of Object.entries(schema)) {
      const at = `${path}/${keyword}`;
      let problem: string | null = null;
      if (keyword === '$ref') {
        const target = typeof value === 'string' ? resolveLocalRef(this.root, value) : undefined;
        if (target === undefined)
          return `${at}: $ref ${JSON.stringify(value)} does not resolve inside the schema (only "#" and "#/..." references are supported)`;
        problem = this.collect(target, pointerPath(value as string));
      } else if (keyword === 'properties' && isObject(value)) {
        for (const [name, item] of Object.entries(value)) problem ??= this.collect(item, `${at}/${escapePointer(name)}`);
      } else if (INSTANCE_CHILDREN.includes(keyword)) problem = this.collect(value, at);
      else if (INSTANCE_LISTS.includes(keyword) && Array.isArray(value)) value.forEach((item, index) => (problem ??= this.collect(item, `${at}/${index}`)));
      if (problem) return problem;
    }
    return null;
  }

  private isProductive(schema: unknown): boolean {
    if (typeof schema === 'boolean') return schema;
    return this.productive.get(schema) ?? true;
  }

  /**
   * Why `schema` has no value. `withChildren`: also when a subschema it needs is not (yet) productive, as ''.
   * Without it, only reasons that are the schema's own, worded for the caller at `path`.
   */
  private localReason(schema: unknown, path: string, withChildren: boolean): string | null {
    if (!isObject(schema)) return null;
    const at = path || '(root)';
    const needs = (child: unknown) => (withChildren && !this.isProductive(child) ? '' : null);
    if ('const' in schema || 'enum' in schema) return this.valuesReason(schema, path);
    if (typeof schema.$ref === 'string') {
      const blocked = needs(resolveLocalRef(this.root, schema.$ref));
      if (blocked !== null) return blocked;
    }
    if (Array.isArray(schema.anyOf) && !schema.anyOf.some((branch) => this.isProductive(branch))) {
      return withChildren ? '' : schema.anyOf.length === 0 ? `${at}/anyOf: no branch` : null;
    }
    const reasons: string[] = [];
    for (const type of typesOf(schema)) {
      const reason =
        type === 'object'
          ? this.objectReason(schema, at, withChildren)
          : type === 'array'
            ? this.arrayReason(schema, at, withChildren)
            : type === 'string'
              ? stringReason(schema, at)
              : null;
      if (reason === null) return null;
      reasons.push(reason);
    }
    return reasons.find((reason) => reason !== '') ?? '';
  }

  private objectReason(schema: Schema, at: string, withChildren: boolean): string | null {
    const properties = isObject(schema.properties) ? schema.properties : {};
    const required = Array.isArray(schema.required) ? (schema.required as string[]) : [];
    const others = schema.additionalProperties ?? schema.unevaluatedProperties ?? false;
    for (const name of required) {
      const child = name in properties ? properties[name] : others;
      if (child === false) {
        return name in properties
          ? `${at}/properties/${name}: the required property "${name}" allows no value`
          : `${at}/required: the required property "${name}" is not listed in properties, and no other properties are allowed`;
      }
      if (withChildren && !this.isProductive(child)) return '';
    }
    return null;
  }

  private arrayReason(schema: Schema, at: string, withChildren: boolean): string | null {
    const minItems = typeof schema.minItems === 'number' ? schema.minItems : 0;
    if (typeof schema.maxItems === 'number' && schema.maxItems < minItems) return `${at}: minItems ${minItems} is greater than maxItems ${schema.maxItems}`;
    const prefix = Array.isArray(schema.prefixItems) ? schema.prefixItems : [];
    for (let index = 0; index < minItems; index++) {
      const child = index < prefix.length ? prefix[index] : (schema.items ?? true);
      if (child === false) return `${at}: minItems ${minItems} needs item ${index}, which items: false forbids`;
      if (withChildren && !this.isProductive(child)) return '';
    }
    return null;
  }

  /** const and enum are emitted as they are: every listed value must match the whole schema around it. */
  private valuesReason(schema: Schema, path: string): string | null {
    if (!this.valueChecks.has(schema)) this.valueChecks.set(schema, this.checkValues(schema, path));
    return this.valueChecks.get(schema)!;
  }

  private checkValues(schema: Schema, path: string): string | null {
    const values = 'const' in schema ? [schema.const] : Array.isArray(schema.enum) ? schema.enum : [];
    const keyword = 'const' in schema ? 'const' : 'enum';
    if (values.length === 0) return `${path}/enum: an empty enum allows no value`;
    let validate: ValidateFunction;
    try {
      validate = this.validatorAt(path);
    } catch (error) {
      return `${path}/${keyword}: its values could not be checked against the schema (${(error as Error).message})`;
    }
    for (const [index, value] of values.entries()) {
      let valid: boolean;
      try {
        valid = validate(value);
      } catch {
        valid = false;
      }
      if (!valid) {
        const where = keyword === 'const' ? `${path}/const` : `${path}/enum/${index}`;
        const why = validate.errors?.[0] ? ` (${validate.errors[0].keyword}: ${validate.errors[0].message})` : '';
        return `${where}: the value ${JSON.stringify(value).slice(0, 80)} does not match the rest of the schema${why}`;
      }
    }
    return null;
  }

  /** ajv's validator for the subschema at `path` (a JSON pointer), with $refs resolved against the whole schema. */
  private validatorAt(path: string) {
    if (!this.validators) {
      this.validators = new Ajv2020({ strict: false, validateFormats: false });
      const { $schema: _schema, $id: _id, ...rest } = this.root as Schema;
      this.validators.addSchema({ ...rest, $id: CHECK_ID });
    }
    const validate = this.validators.getSchema(`${CHECK_ID}#${path.split('/').map(encodeURIComponent).join('/')}`);
    if (!validate) throw new Error(`no subschema at ${path}`);
    return validate;
  }
}

function stringReason(schema: Schema, at: string): string | null {
  if (typeof schema.minLength === 'number' && typeof schema.maxLength === 'number' && schema.minLength > schema.maxLength)
    return `${at}: minLength ${schema.minLength} is greater than maxLength ${schema.maxLength}`;
  return null;
}

/** The types a schema's values may have; without `type`, the one its keywords imply (XGrammar infers it so). */
function typesOf(schema: Schema): unknown[] {
  if (schema.type !== undefined) return Array.isArray(schema.type) ? schema.type : [schema.type];
  if (['properties', 'required', 'additionalProperties'].some((keyword) => keyword in schema)) return ['object'];
  if (['items', 'prefixItems', 'minItems', 'maxItems'].some((keyword) => keyword in schema)) return ['array'];
  if (['minLength', 'maxLength'].some((keyword) => keyword in schema)) return ['string'];
  return ['null'];
}

/** "#/$defs/a" -> "/$defs/a": the path a $ref target is reported under. */
function pointerPath(ref: string): string {
  return ref === '#' ? '' : ref.slice(1);
}

/** Null when every subschema reachable from `schema` has a finite value; otherwise why not, naming the path. */
export function unsatisfiableProblem(schema: unknown): string | null {
  return new Satisfiability(schema).problem();
}
