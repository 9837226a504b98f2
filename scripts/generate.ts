// `npm run generate`: the backend's generate command, plus text in and out where the model folder has a
// tokenizer (tokenizer.model or tokenizer.json; the built-in default model uses the Mistral v1 one).
// Glue only: tokenization is the edge's tokenizer, generation is the backend's engine, as in serving.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildTokenizerAsset, resolveSource } from '../edge/scripts/build-tokenizer';
import { encodeChat, encodeCompletionPrompt } from '../edge/src/tokenizer/chat-template';
import { Tokenizer } from '../edge/src/tokenizer/tokenizer';
import { generate, main as generateIds } from '../gpu-backend/src/cli/generate';
import { DEFAULT_MODEL_DIR } from '../gpu-backend/src/model/checkpoint/default-model';
import { parseGenerateArgs, USAGE, UsageError } from '../gpu-backend/src/cli/generate-args';

async function tokenizerFor(modelDir: string): Promise<Tokenizer | null> {
  const hasOwn = ['tokenizer.model', 'tokenizer.json'].some((file) => existsSync(path.join(modelDir, file)));
  const isDefault = path.resolve(modelDir) === DEFAULT_MODEL_DIR;
  if (!hasOwn && !isDefault) return null;
  return Tokenizer.fromAsset(await buildTokenizerAsset(resolveSource(hasOwn ? modelDir : undefined)));
}

/** Splits off the text flags; everything else goes to the backend's generate command unchanged. */
function splitTextFlags(argv: string[]): { prompt?: string; chat: boolean; rest: string[] } {
  const { values, tokens } = parseArgs({ args: argv, strict: false, tokens: true, options: { prompt: { type: 'string' }, chat: { type: 'boolean' } } });
  const rest: string[] = [];
  for (const token of tokens ?? []) {
    if (token.kind === 'option' && (token.name === 'prompt' || token.name === 'chat')) continue;
    if (token.kind === 'option') rest.push(token.rawName, ...(token.value !== undefined && !token.inlineValue ? [token.value] : []));
    else if (token.kind === 'positional') rest.push(token.value);
  }
  return { prompt: typeof values.prompt === 'string' ? values.prompt : undefined, chat: values.chat === true, rest };
}

async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE} [--prompt TEXT [--chat]]
One-off generation through the serving engine. --prompt tokenizes TEXT with the model folder's tokenizer
(tokenizer.model or tokenizer.json; the built-in v1 one for the default model), --chat applies the chat
template, and the output is detokenized text (--json: {"tokenIds", "text"}).
`);
    return 0;
  }
  const { prompt, chat, rest } = splitTextFlags(argv);
  const modelIndex = rest.indexOf('--model');
  const modelDir = modelIndex >= 0 ? rest[modelIndex + 1] : undefined;
  if (!modelDir) return generateIds(rest);
  const tokenizer = await tokenizerFor(modelDir);
  if (prompt === undefined && !tokenizer) return generateIds(rest);
  if (prompt !== undefined && !tokenizer) {
    process.stderr.write(`generate: --prompt needs a tokenizer, and ${modelDir} has neither tokenizer.model nor tokenizer.json: pass --prompt-ids\n`);
    return 2;
  }
  const promptIds =
    prompt === undefined ? [] : chat ? encodeChat(tokenizer!, [{ role: 'user', content: prompt }]).tokenIds : encodeCompletionPrompt(tokenizer!, prompt);
  let args;
  try {
    args = parseGenerateArgs(prompt === undefined ? rest : [...rest, '--prompt-ids', promptIds.join(',')]);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`generate: ${error.message}\n${USAGE} [--prompt TEXT [--chat]]\n`);
    return 2;
  }
  try {
    const { tokenIds, speculative } = await generate(args);
    const text = tokenizer!.decode(tokenIds.filter((id) => id !== tokenizer!.eosTokenId));
    process.stdout.write(args.json ? `${JSON.stringify({ tokenIds, ...(speculative && { speculative }), text })}\n` : `${text}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`generate: ${(error as Error).message}\n`);
    return 1;
  }
}

process.exitCode = await run(process.argv.slice(2));
