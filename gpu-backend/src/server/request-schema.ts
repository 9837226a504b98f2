// POST /v1/generate bodies validated into typed requests: defaults from DEFAULT_SAMPLING, limits from
// the served model, errors as `errorBody(..., param)` naming the offending field. Unknown fields are ignored.

import { z } from 'zod';
import { DEFAULT_SAMPLING, SEED_LIMIT, errorBody, type ErrorBody, type GrammarSpec, type SamplingParams } from '../../../shared/protocol';
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

export type ParseResult = { ok: true; request: ValidatedGenerateRequest } | { ok: false; status: 400; body: ErrorBody };

const MAX_STOP_TOKEN_IDS = 64;
const MAX_LOGPROBS = 20;

function schemaFor(limits: RequestLimits) {
  const tokenId = z.number().int().min(0).max(limits.vocabSize - 1, `must be below the vocabulary size ${limits.vocabSize}`);
  const finite = z.number().finite();
  const sampling = z.object({
    temperature: finite.min(0).max(100).optional(),
    topP: finite.gt(0).max(1).optional(),
    topK: z.number().int().min(-1).optional(),
    minP: finite.min(0).max(1).optional(),
    seed: z.number().int().min(-SEED_LIMIT).max(SEED_LIMIT).optional(),
    presencePenalty: finite.min(-2).max(2).optional(),
    frequencyPenalty: finite.min(-2).max(2).optional(),
    repetitionPenalty: finite.gt(0).max(10).optional(),
    maxTokens: z.number().int().min(1).max(limits.maxModelLen, `must be at most the model's context length ${limits.maxModelLen}`).optional(),
    stopTokenIds: z.array(tokenId).max(MAX_STOP_TOKEN_IDS).optional(),
    ignoreEos: z.boolean().optional(),
    logprobs: z.number().int().min(0).max(MAX_LOGPROBS).optional(),
    n: z.number().int().min(1).max(limits.maxChoices, `must be at most ${limits.maxChoices}`).optional(),
  });
  return z.object({
    requestId: z.string().min(1).max(256),
    tokenIds: z.array(tokenId).min(1, 'must hold at least one token id'),
    sampling: sampling.optional(),
    stream: z.boolean().optional(),
    prefixLength: z.number().int().min(0).optional(),
    grammar: GrammarSpecSchema.optional(),
  });
}

/** `sampling.temperature`, `tokenIds[3]`: the wire name of the field at fault. */
function fieldName(path: (string | number)[]): string {
  return path.reduce<string>((name, key) => (typeof key === 'number' ? `${name}[${key}]` : name ? `${name}.${key}` : key), '');
}

export class RequestSchema {
  private readonly schema: ReturnType<typeof schemaFor>;

  constructor(readonly limits: RequestLimits) {
    this.schema = schemaFor(limits);
  }

  parse(body: unknown): ParseResult {
    const parsed = this.schema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = fieldName(issue.path);
      // Every problem inside a grammar spec is reported as param "grammar" (the contract), the message says where.
      const param = field.startsWith('grammar') ? 'grammar' : field || null;
      return { ok: false, status: 400, body: errorBody('invalid_request', field ? `${field}: ${issue.message}` : issue.message, param) };
    }
    const { requestId, tokenIds, stream, prefixLength, grammar } = parsed.data;
    const given = parsed.data.sampling ?? {};
    const sampling: SamplingParams = { ...DEFAULT_SAMPLING, ...stripUndefined(given) };
    const room = this.limits.maxModelLen - tokenIds.length;
    if (given.maxTokens === undefined) sampling.maxTokens = Math.min(sampling.maxTokens, room);
    if (sampling.maxTokens < 1 || sampling.maxTokens > room) {
      const message =
        `This model's maximum context length is ${this.limits.maxModelLen} tokens; the prompt has ${tokenIds.length} ` +
        `and ${given.maxTokens ?? 1} more were requested.`;
      return { ok: false, status: 400, body: errorBody('context_length_exceeded', message, given.maxTokens === undefined ? 'tokenIds' : 'sampling.maxTokens') };
    }
    const request: ValidatedGenerateRequest = { requestId, tokenIds, sampling, stream: stream ?? false };
    if (prefixLength !== undefined && prefixLength > 0 && prefixLength < tokenIds.length) request.prefixLength = prefixLength;
    if (grammar) request.grammarSpec = grammar as GrammarSpec;
    return { ok: true, request };
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>;
}
