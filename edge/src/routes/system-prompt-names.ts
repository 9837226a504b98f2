// GET /v1/system_prompts: the names a key can pass as `system_prompt_id` (or `<model>@<name>`), for the
// playground's picker and any client. Names only, never the contents. Every key may use every stored
// prompt, so every key sees the same list; it is read-only and answers like /v1/models.

import type { AppContext } from '../app-env';
import { systemPromptStore } from '../prompt/prompt-stores';

export async function systemPromptNames(c: AppContext): Promise<Response> {
  const { names, complete } = await systemPromptStore(c.env).names();
  return c.json({ object: 'list', data: names.map((id) => ({ id, object: 'system_prompt' })), has_more: !complete });
}
