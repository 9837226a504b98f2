// `npm run -s generate -- --model DIR --prompt-ids 1,461,401 --max-new-tokens N --temperature 0 --json`:
// generation through the same Engine (and Sampler) the server uses. Exit 2 for bad flags, 1 for model errors.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_SAMPLING } from '../../../shared/protocol';
import { onnxCacheDirFrom } from '../config';
import { Engine } from '../model/runtime/engine';
import { Prng } from '../server/prng';
import { argmax } from '../server/logits-processors';
import { Sampler } from '../server/sampler';
import { type GenerateArgs, USAGE, UsageError, parseGenerateArgs } from './generate-args';

/** Generated ids only (EOS included when it ends the run), through the serving engine. */
export async function generate(args: GenerateArgs): Promise<number[]> {
  const engine = await Engine.load({
    modelDir: args.modelDir,
    dtype: args.dtype,
    kvCacheDtype: args.kvCacheDtype,
    executionProvider: 'cpu',
    runtime: args.runtime,
    intraOpThreads: args.threads,
    maxSequences: 1,
    chunkSize: args.chunkSize,
    onnxCacheDir: args.onnxCacheDir === undefined ? onnxCacheDirFrom(process.env) : args.onnxCacheDir,
  });
  try {
    const generated: number[] = [];
    if (args.maxNewTokens === 0) return generated;
    const sequenceId = engine.createSequence();
    if (args.promptIds.length + args.maxNewTokens - 1 > engine.maxModelLen) {
      throw new Error(`prompt (${args.promptIds.length}) + max new tokens (${args.maxNewTokens}) exceed the model's ${engine.maxModelLen} positions`);
    }
    // Greedy stays a plain argmax (lowest id on ties, as the reference); sampling is the server's Sampler.
    const sampler = new Sampler({ ...DEFAULT_SAMPLING, temperature: args.temperature, topP: args.topP, topK: args.topK, seed: args.seed }, new Prng(args.seed));
    const history = { seenTokenIds: new Set(args.promptIds), outputCounts: new Map<number, number>() };
    let [logits] = await engine.step([{ sequenceId, tokenIds: args.promptIds }]);
    for (;;) {
      const tokenId = args.temperature === 0 ? argmax(logits) : sampler.sample(logits, history).tokenId;
      generated.push(tokenId);
      history.seenTokenIds.add(tokenId);
      history.outputCounts.set(tokenId, (history.outputCounts.get(tokenId) ?? 0) + 1);
      if (generated.length >= args.maxNewTokens || (tokenId === engine.config.eosTokenId && !args.ignoreEos)) return generated;
      [logits] = await engine.step([{ sequenceId, tokenIds: [tokenId] }]);
    }
  } finally {
    await engine.dispose();
  }
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\nOne-off generation through the serving engine: token ids in, token ids out.\n`);
    return 0;
  }
  let args: GenerateArgs;
  try {
    args = parseGenerateArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`generate: ${error.message}\n${USAGE}\n`);
    return 2;
  }
  try {
    const tokenIds = await generate(args);
    process.stdout.write(args.json ? `${JSON.stringify({ tokenIds })}\n` : `${tokenIds.join(' ')}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`generate: ${(error as Error).message}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
