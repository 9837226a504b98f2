// `npm run -s generate -- --model DIR --prompt-ids 1,461,401 --max-new-tokens N --temperature 0 --json`:
// generation through the same Engine (and Sampler) the server uses. Exit 2 for bad flags, 1 for model errors.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_SAMPLING } from '../../../shared/protocol';
import { onnxCacheDirFrom } from '../config';
import { readModelConfig } from '../model/checkpoint/config';
import { Engine } from '../model/runtime/engine';
import type { SessionRuntime } from '../model/runtime/engine-types';
import { chooseRuntime } from '../model/runtime/runtime-choice';
import { keptDrafts, NgramProposer } from '../server/ngram-proposer';
import { Prng } from '../server/prng';
import { argmax } from '../server/logits-processors';
import { Sampler } from '../server/sampler';
import { type GenerateArgs, USAGE, UsageError, parseGenerateArgs } from './generate-args';

export interface GenerateResult {
  /** Generated ids only (EOS included when it ends the run). */
  tokenIds: number[];
  /** Draft ids verified and kept (--speculative ngram); null when off. */
  speculative: { drafted: number; accepted: number } | null;
}

/** The session the backend would choose for this checkpoint (runtime-choice.ts); its config is read only for this. */
function defaultRuntime(args: GenerateArgs, speculative: boolean): SessionRuntime {
  const model = readModelConfig(args.modelDir);
  const asked = { executionProvider: 'cpu', dtype: args.dtype, kvCacheDtype: args.kvCacheDtype, maxModelLen: model.maxPositions, speculative } as const;
  return chooseRuntime(model, asked).runtime;
}

/** Generation through the serving engine; with --speculative ngram, prompt-lookup drafts verified as the server does. */
export async function generate(args: GenerateArgs): Promise<GenerateResult> {
  const speculativeTokens = args.speculative === 'ngram' ? args.specTokens : 0;
  const runtime = args.runtime ?? defaultRuntime(args, speculativeTokens > 0);
  const engine = await Engine.load({
    modelDir: args.modelDir,
    dtype: args.dtype,
    kvCacheDtype: args.kvCacheDtype,
    executionProvider: 'cpu',
    runtime,
    intraOpThreads: args.threads,
    maxSequences: 1,
    chunkSize: args.chunkSize,
    onnxCacheDir: args.onnxCacheDir === undefined ? onnxCacheDirFrom(process.env) : args.onnxCacheDir,
    speculativeTokens,
  });
  const proposer = speculativeTokens > 0 ? new NgramProposer({ maxTokens: speculativeTokens }) : null;
  const result = (tokenIds: number[]): GenerateResult => ({
    tokenIds,
    speculative: proposer && { drafted: proposer.drafted, accepted: proposer.accepted },
  });
  try {
    const generated: number[] = [];
    if (args.maxNewTokens === 0) return result(generated);
    const sequenceId = engine.createSequence();
    if (args.promptIds.length + args.maxNewTokens - 1 > engine.maxModelLen) {
      throw new Error(`prompt (${args.promptIds.length}) + max new tokens (${args.maxNewTokens}) exceed the model's ${engine.maxModelLen} positions`);
    }
    // Greedy stays a plain argmax (lowest id on ties, as the reference); sampling is the server's Sampler.
    const sampler = new Sampler({ ...DEFAULT_SAMPLING, temperature: args.temperature, topP: args.topP, topK: args.topK, seed: args.seed }, new Prng(args.seed));
    const history = { seenTokenIds: new Set(args.promptIds), outputCounts: new Map<number, number>() };
    /** Samples one row and records it; true when the run is over. */
    const emit = (logits: Float32Array): boolean => {
      const tokenId = args.temperature === 0 ? argmax(logits) : sampler.sample(logits, history).tokenId;
      generated.push(tokenId);
      history.seenTokenIds.add(tokenId);
      history.outputCounts.set(tokenId, (history.outputCounts.get(tokenId) ?? 0) + 1);
      return generated.length >= args.maxNewTokens || (tokenId === engine.config.eosTokenId && !args.ignoreEos);
    };
    const [promptLogits] = await engine.step([{ sequenceId, tokenIds: args.promptIds }]);
    if (emit(promptLogits)) return result(generated);
    const { vocabSize } = engine.config;
    for (;;) {
      const draft = proposer?.propose(args.promptIds, generated, args.maxNewTokens - generated.length - 1) ?? [];
      const fedLength = engine.sequenceLength(sequenceId) + 1;
      const [rows] = await engine.step([{ sequenceId, tokenIds: [generated[generated.length - 1], ...draft], verify: draft.length > 0 }]);
      // Kept while the id drawn equals the draft: the same ids as without drafts (scheduler.ts, verifyAndEmit).
      let done = false;
      const accepted = await keptDrafts(draft, async (i) => {
        done = emit(rows.subarray(i * vocabSize, (i + 1) * vocabSize));
        return { tokenId: generated[generated.length - 1], done };
      });
      if (draft.length > 0) {
        proposer!.record(draft.length, accepted);
        engine.truncateSequence(sequenceId, fedLength + accepted);
      }
      if (done) return result(generated);
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
    const { tokenIds, speculative } = await generate(args);
    process.stdout.write(args.json ? `${JSON.stringify({ tokenIds, ...(speculative && { speculative }) })}\n` : `${tokenIds.join(' ')}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`generate: ${(error as Error).message}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
