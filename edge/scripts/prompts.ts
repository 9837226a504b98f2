// `npx tsx edge/scripts/prompts.ts put|get|list|delete`: named system prompts in the SYSTEM_PROMPTS KV
// namespace, used by requests as `system_prompt_id` or the model alias `<model>@<name>`.

import { readFileSync } from 'node:fs';
import { MAX_PROMPT_CHARS, PROMPT_NAME_PATTERN, PROMPT_PREFIX, storedPromptSchema } from '../src/prompt/system-prompt-store';
import { kvDelete, kvGet, kvList, kvPut, kvTargetFrom } from './wrangler-kv';

const USAGE = `Usage:
  npm run prompts -- put <name> (--file PATH | --text "...")
  npm run prompts -- get <name>
  npm run prompts -- list
  npm run prompts -- delete <name>
Options: --remote (deployed namespace) | --persist-to DIR (local state folder, as given to wrangler dev)`;

function checkName(name: string | undefined): string {
  if (!name || !PROMPT_NAME_PATTERN.test(name)) throw new Error('a name is 1-128 of A-Z a-z 0-9 . _ - and starts with a letter or digit');
  return name;
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}

function main(): void {
  if (process.argv.slice(2).some((arg) => arg === '--help' || arg === '-h')) {
    console.log(USAGE);
    return;
  }
  const { target, rest } = kvTargetFrom(process.argv.slice(2), 'SYSTEM_PROMPTS');
  const [command, name, flag, value] = rest;
  if (command === 'put') {
    const content = flag === '--file' ? readFileSync(value, 'utf8') : flag === '--text' ? value : undefined;
    if (!content) throw new Error('put needs --file PATH or --text "..."');
    if (content.length > MAX_PROMPT_CHARS) throw new Error(`a system prompt is at most ${MAX_PROMPT_CHARS} characters`);
    kvPut(target, PROMPT_PREFIX + checkName(name), JSON.stringify({ name, content, updated: new Date().toISOString() }));
    console.log(`Stored system prompt '${name}' (${content.length} characters). Workers pick it up within 60 s (cache TTL).`);
  } else if (command === 'get') {
    const raw = kvGet(target, PROMPT_PREFIX + checkName(name));
    if (raw === null) throw new Error(`no system prompt named '${name}' (see \`npm run prompts -- list\`)`);
    const parsed = storedPromptSchema.safeParse(parseJson(raw));
    if (!parsed.success) throw new Error(`the stored value of '${name}' is not a system prompt record: put it again`);
    console.log(parsed.data.content);
  } else if (command === 'list') {
    for (const key of kvList(target, PROMPT_PREFIX)) console.log(key.slice(PROMPT_PREFIX.length));
  } else if (command === 'delete') {
    if (kvGet(target, PROMPT_PREFIX + checkName(name)) === null) throw new Error(`no system prompt named '${name}' (see \`npm run prompts -- list\`)`);
    kvDelete(target, PROMPT_PREFIX + name);
    console.log(`Deleted '${name}'.`);
  } else {
    console.error(USAGE);
    process.exit(command ? 2 : 0);
  }
}

try {
  main();
} catch (error) {
  console.error(`prompts: ${(error as Error).message}`);
  process.exit(1);
}
