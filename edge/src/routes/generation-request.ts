// What /v1/chat/completions and /v1/completions share before and around generation: reading the request
// (size cap, JSON, schema, model and stored-prompt alias, tokenizer) and the fields every OpenAI object
// of a response opens with.

import type { z } from 'zod';
import { readJsonBody, validate } from '../api/read-request';
import type { AppContext } from '../app-env';
import type { EdgeConfig } from '../config';
import { resolveModel } from '../generation/generation-setup';
import type { ResponseIds } from '../generation/run-generation';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import type { Tokenizer } from '../tokenizer/tokenizer';

/** What both bodies carry for resolveModel. */
type ModelFields = { model: string; system_prompt_id?: string };

export interface GenerationRequest<Body extends ModelFields> {
  config: EdgeConfig;
  body: Body;
  /** The name echoed back in responses (what the client asked for). */
  model: string;
  systemPromptName: string | null;
  tokenizer: Tokenizer;
}

/** The body validated against `schema`, with the model resolved: 413/400/404 are thrown before anything else runs. */
export async function readGenerationRequest<Body extends ModelFields>(
  c: AppContext,
  schema: z.ZodType<Body, z.ZodTypeDef, unknown>,
): Promise<GenerationRequest<Body>> {
  const config = c.get('config');
  const body = validate(schema, await readJsonBody(c.req.raw, config.maxBodyBytes));
  const { model, systemPromptName } = resolveModel(body.model, body.system_prompt_id, config);
  return { config, body, model, systemPromptName, tokenizer: getDefaultTokenizer() };
}

/** `{ id, object, created, model, system_fingerprint }`, in OpenAI's key order. */
export function responseHead<O extends string>({ id, model, created }: ResponseIds, object: O) {
  return { id, object, created, model, system_fingerprint: null };
}
