// vLLM's POST /tokenize and POST /detokenize: {prompt} or {messages, add_generation_prompt} -> {count,
// max_model_len, tokens}; {tokens} -> {prompt}. The same template and tokenizer as generation.

import { readJsonBody, validate } from '../api/read-request';
import { detokenizeRequestSchema, tokenizeRequestSchema } from '../api/request-schemas';
import type { AppContext } from '../app-env';
import { badRequest } from '../../../shared/http-error';
import type { EdgeConfig } from '../config';
import { modelNotFound, resolveModel } from '../generation/generation-setup';
import { chatRequestPrompt } from '../prompt/request-prompt';
import { encodeCompletionPrompt } from '../tokenizer/chat-template';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { planTools } from '../tools/tool-request';

function checkModel(model: string | undefined, modelId: string): void {
  if (model !== undefined && model.split('@')[0] !== modelId) {
    throw modelNotFound(model, modelId);
  }
}

/** The stored system prompt a chat request names (`system_prompt_id` or `model@name`), as the chat route resolves it. */
function systemPromptNameOf(model: string | undefined, systemPromptId: string | undefined, config: EdgeConfig): string | null {
  if (model === undefined) return systemPromptId ?? null;
  return resolveModel(model, systemPromptId, config).systemPromptName;
}

export async function tokenize(c: AppContext): Promise<Response> {
  const config = c.get('config');
  const raw = await readJsonBody(c.req.raw, config.maxBodyBytes);
  // The schema is a union, so a body with both would silently match the prompt branch.
  if (typeof raw === 'object' && raw !== null && 'prompt' in raw && 'messages' in raw) {
    throw badRequest('Give either prompt or messages, not both.', 'messages');
  }
  const body = validate(tokenizeRequestSchema, raw);
  checkModel(body.model, config.modelId);
  const tokenizer = getDefaultTokenizer();
  let tokenIds: number[];
  if ('prompt' in body) {
    tokenIds = body.add_special_tokens === false ? tokenizer.encode(body.prompt) : encodeCompletionPrompt(tokenizer, body.prompt);
  } else {
    // Mistral's templates always end a user turn with the generation prompt ([/INST]); there is no variant without it.
    const name = systemPromptNameOf(body.model, body.system_prompt_id, config);
    // vLLM's /tokenize takes `tools` like a chat request; the prompt lists them as tool_choice "auto" would.
    const { prompt } = await chatRequestPrompt(c, tokenizer, name, body.messages, () => planTools({ tools: body.tools }, tokenizer));
    tokenIds = prompt.tokenIds;
  }
  return c.json({ count: tokenIds.length, max_model_len: config.maxModelLen, tokens: tokenIds });
}

export async function detokenize(c: AppContext): Promise<Response> {
  const config = c.get('config');
  const body = validate(detokenizeRequestSchema, await readJsonBody(c.req.raw, config.maxBodyBytes));
  checkModel(body.model, config.modelId);
  const tokenizer = getDefaultTokenizer();
  const bad = body.tokens.findIndex((id) => id >= tokenizer.vocabSize);
  if (bad !== -1) throw badRequest(`Token id ${body.tokens[bad]} is outside the vocabulary (${tokenizer.vocabSize}).`, `tokens[${bad}]`);
  return c.json({ prompt: tokenizer.decode(body.tokens) });
}
