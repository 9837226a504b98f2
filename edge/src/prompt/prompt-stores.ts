// The worker's prompt state, opened in one place: the isolate's system prefix cache (shared by chat
// generation and /tokenize) and the stored system prompts (KV behind the isolate and Cache API caches).

import { defaultCache } from '../app-env';
import { SystemPrefixCache } from './system-prefix-cache';
import { SystemPromptStore } from './system-prompt-store';

export const systemPrefixCache = new SystemPrefixCache(defaultCache());

export function systemPromptStore(env: Env): SystemPromptStore {
  return new SystemPromptStore(env.SYSTEM_PROMPTS, defaultCache());
}
