// POST /v1/generate bodies validated into typed requests: sampling fields, ranges and defaults from the
// shared field table, limits from the served model, refusals thrown as HttpError naming the offending
// field (`param`). Unknown fields are ignored.

import { z } from 'zod';
import { HttpError, badRequest, fieldPath } from '../../../shared/http-error';
import { DEFAULT_SAMPLING, type GrammarSpec, type SamplingParams, type StopRequest } from '../../../shared/protocol';
import { SAMPLING_FIELDS, fieldSchema, type SamplingFieldName } from '../../../shared/sampling-fields';
import { GrammarSpecSchema, type GrammarSource } from './grammar/grammar-source';

export interface RequestLimits {
  vocabSize: number;
  maxModelLen: number;
  /** Largest n: choices of one request run at once. */
  maxChoices: number;
}

export interface ValidatedGenerateRequest {
  requestId: string;
  tokenIds: number[];
  sampling: SamplingParams;
  stream: boolean;
  prefixLength?: number;
  /** As sent; app.ts checks it and compiles it (the check thread) into `grammar`. */
  grammarSpec?: GrammarSpec;
  grammar?: GrammarSource;
}

const MAX_STOP_TOKEN_IDS = 64;
const REQUEST_ID = z.string().min(1).max(256);
const STOP_REQUEST = z.object({ requestId: REQUEST_ID, reason: z.enum(['stop_string', 'client_closed']).optional() });

function schemaFor(limits: RequestLimits) {
  const tokenId = z
    .number()
    .int()
    .min(0)
    .max(limits.vocabSize - 1, `must be below the vocabulary size ${limits.vocabSize}`);
  // Every field from the table; the ones bounded by the served model get those bounds here.
  const bySize: Partial<Record<SamplingFieldName, z.ZodTypeAny>> = {
    maxTokens: z.number().int().min(1).max(limits.maxModelLen, `must be at most the model's context length ${limits.maxModelLen}`),
    stopTokenIds: z.array(tokenId).max(MAX_STOP_TOKEN_IDS),
    n: z.number().int().min(1).max(limits.maxChoices, `must be at most ${limits.maxChoices}`),
  };
  const fields = Object.keys(SAMPLING_FIELDS) as SamplingFieldName[];
  const sampling = z.object(Object.fromEntries(fields.map((name) => [name, (bySize[name] ?? fieldSchema(SAMPLING_FIELDS[name], 'protocol')).optional()])));
  return z.object({
    requestId: REQUEST_ID,
    tokenIds: z.array(tokenId).min(1, 'must hold at least one token id'),
    sampling: sampling.optional(),
    stream: z.boolean().optional(),
    prefixLength: z.number().int().min(0).optional(),
    grammar: GrammarSpecSchema.optional(),
  });
}

export class RequestSchema {
  private readonly schema: ReturnType<typeof schemaFor>;

  constructor(readonly limits: RequestLimits) {
    this.schema = schemaFor(limits);
  }

  /** The typed request, or throws the 400 that names the field at fault. */
  parse(body: unknown): ValidatedGenerateRequest {
    const parsed = this.schema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = fieldPath(issue.path);
      // Every problem inside a grammar spec is reported as param "grammar" (the contract), the message says where.
      const param = field.startsWith('grammar') ? 'grammar' : field || null;
      throw badRequest(field ? `${field}: ${issue.message}` : issue.message, param);
    }
    const { requestId, tokenIds, stream, prefixLength, grammar } = parsed.data;
    const given = (parsed.data.sampling ?? {}) as Partial<SamplingParams>;
    const sampling: SamplingParams = { ...DEFAULT_SAMPLING, ...stripUndefined(given) };
    const room = this.limits.maxModelLen - tokenIds.length;
    if (given.maxTokens === undefined) sampling.maxTokens = Math.min(sampling.maxTokens, room);
    if (sampling.maxTokens < 1 || sampling.maxTokens > room) {
      const message =
        `This model's maximum context length is ${this.limits.maxModelLen} tokens; the prompt has ${tokenIds.length} ` +
        `and ${given.maxTokens ?? 1} more were requested.`;
      throw new HttpError(400, 'context_length_exceeded', message, given.maxTokens === undefined ? 'tokenIds' : 'sampling.maxTokens');
    }
    const request: ValidatedGenerateRequest = { requestId, tokenIds, sampling, stream: stream ?? false };
    if (prefixLength !== undefined && prefixLength > 0 && prefixLength < tokenIds.length) request.prefixLength = prefixLength;
    if (grammar) request.grammarSpec = grammar as GrammarSpec;
    return request;
  }
}

/** A POST /v1/stop body, or throws the 400 naming the field (requestId or reason). */
export function parseStopRequest(body: unknown): StopRequest {
  const parsed = STOP_REQUEST.safeParse(body);
  if (!parsed.success) {
    const param = parsed.error.issues[0].path[0] === 'reason' ? 'reason' : 'requestId';
    throw badRequest(`${param}: ${parsed.error.issues[0].message}`, param);
  }
  return parsed.data;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>;
}
