// The sampling field table: one row per SamplingParams field, from which the backend's `sampling` schema,
// the edge's public (OpenAI-named) sampling fields, the defaults and the name mapping all follow.
//
// To add a sampling field: add it to SamplingParams (shared/protocol.ts), add its row here (the compiler
// insists), and teach gpu-backend/src/server/sampler.ts what it does. Both schemas pick it up from the row.

import { z } from 'zod';
import type { SamplingParams } from './protocol';

/** Seeds are integers in [-SEED_LIMIT, SEED_LIMIT] (exact in a double); the edge checks this range, the backend again. */
export const SEED_LIMIT = Number.MAX_SAFE_INTEGER;
/** Most alternatives reported per token (OpenAI's top_logprobs limit); both sides enforce it. */
export const MAX_LOGPROBS = 20;

export interface SamplingFieldSpec {
  /**
   * The field's name in the public OpenAI-style bodies. null: the edge route sets it itself (maxTokens from
   * max_tokens/max_completion_tokens and the context, n and logprobs per API) or it is backend-only.
   */
  openAiName: string | null;
  kind: 'number' | 'integer' | 'boolean' | 'tokenIds';
  /** Inclusive lower bound. */
  min?: number;
  /** Exclusive lower bound. */
  above?: number;
  /** Inclusive upper bound on the protocol (the backend's range). */
  max?: number;
  /** Tighter upper bound on the public API, where OpenAI documents one (temperature: 2). */
  publicMax?: number;
  /** What the backend uses when the field is absent; undefined: off. */
  default: unknown;
}

type FieldTable = { [K in keyof Required<SamplingParams>]: SamplingFieldSpec & { default: SamplingParams[K] | undefined } };

export const SAMPLING_FIELDS = {
  temperature: { openAiName: 'temperature', kind: 'number', min: 0, max: 100, publicMax: 2, default: 1 },
  topP: { openAiName: 'top_p', kind: 'number', above: 0, max: 1, default: 1 },
  topK: { openAiName: 'top_k', kind: 'integer', min: -1, default: 0 },
  minP: { openAiName: 'min_p', kind: 'number', min: 0, max: 1, default: 0 },
  seed: { openAiName: 'seed', kind: 'integer', min: -SEED_LIMIT, max: SEED_LIMIT, default: undefined },
  presencePenalty: { openAiName: 'presence_penalty', kind: 'number', min: -2, max: 2, default: 0 },
  frequencyPenalty: { openAiName: 'frequency_penalty', kind: 'number', min: -2, max: 2, default: 0 },
  repetitionPenalty: { openAiName: 'repetition_penalty', kind: 'number', above: 0, max: 10, default: 1 },
  /** Upper bound on the backend: the served model's context length (request-schema.ts). */
  maxTokens: { openAiName: null, kind: 'integer', min: 1, default: 256 },
  /** Token ids bounded by the served vocabulary (request-schema.ts). */
  stopTokenIds: { openAiName: null, kind: 'tokenIds', default: [] },
  ignoreEos: { openAiName: 'ignore_eos', kind: 'boolean', default: false },
  logprobs: { openAiName: null, kind: 'integer', min: 0, max: MAX_LOGPROBS, default: undefined },
  /** Upper bound on the backend: its running-choice limit (request-schema.ts). */
  n: { openAiName: null, kind: 'integer', min: 1, default: 1 },
} as const satisfies FieldTable;

export type SamplingFieldName = keyof typeof SAMPLING_FIELDS;
type Table = typeof SAMPLING_FIELDS;
type PublicKey = { [K in SamplingFieldName]: Table[K]['openAiName'] extends string ? K : never }[SamplingFieldName];

/** The public sampling fields a body may carry, by their OpenAI names (`top_p`, `ignore_eos`, ...). */
export type PublicSamplingFields = { [K in PublicKey as Table[K]['openAiName'] & string]?: SamplingParams[K] };

const FIELD_NAMES = Object.keys(SAMPLING_FIELDS) as SamplingFieldName[];
const PUBLIC_NAMES = FIELD_NAMES.filter((name) => SAMPLING_FIELDS[name].openAiName !== null) as PublicKey[];

export const DEFAULT_SAMPLING: SamplingParams = Object.fromEntries(
  FIELD_NAMES.filter((name) => SAMPLING_FIELDS[name].default !== undefined).map((name) => [name, copyOf(SAMPLING_FIELDS[name].default)]),
) as unknown as SamplingParams;

/** Arrays are copied so that no caller can change the table's default through DEFAULT_SAMPLING. */
function copyOf(value: unknown): unknown {
  return Array.isArray(value) ? [...value] : value;
}

/** The zod type of one row (without optionality); `side` picks the public or the protocol range. */
export function fieldSchema(spec: SamplingFieldSpec, side: 'public' | 'protocol'): z.ZodTypeAny {
  if (spec.kind === 'boolean') return z.boolean();
  if (spec.kind === 'tokenIds') return z.array(z.number().int().min(0));
  let schema = z.number().finite();
  if (spec.kind === 'integer') schema = schema.int();
  if (spec.min !== undefined) schema = schema.min(spec.min);
  if (spec.above !== undefined) schema = schema.gt(spec.above);
  const max = side === 'public' ? (spec.publicMax ?? spec.max) : spec.max;
  if (max !== undefined) schema = schema.max(max);
  return schema;
}

/** The public sampling fields as zod shapes keyed by OpenAI name, each wrapped by the edge's `optional`. */
export function publicSamplingShape(optional: (schema: z.ZodTypeAny) => z.ZodTypeAny): Record<string, z.ZodTypeAny> {
  return Object.fromEntries(PUBLIC_NAMES.map((name) => [SAMPLING_FIELDS[name].openAiName, optional(fieldSchema(SAMPLING_FIELDS[name], 'public'))]));
}

/** OpenAI names -> protocol names, for the public fields a body set (absent and undefined ones are left out). */
export function samplingFromPublic(body: PublicSamplingFields): Partial<SamplingParams> {
  const sampling: Record<string, unknown> = {};
  for (const name of PUBLIC_NAMES) {
    const value = (body as Record<string, unknown>)[SAMPLING_FIELDS[name].openAiName];
    if (value !== undefined) sampling[name] = value;
  }
  return sampling as Partial<SamplingParams>;
}
