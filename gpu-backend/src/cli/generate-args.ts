// Flags of the generate command, validated into a typed object; UsageError names the flag at fault.

import os from 'node:os';
import { parseArgs } from 'node:util';
import type { KvCacheDtype, SessionRuntime, WeightFormat } from '../model/runtime/engine-types';

export class UsageError extends Error {}

export const USAGE = `usage: generate --model DIR --prompt-ids 1,461,401 [--max-new-tokens N] [--temperature T] [--top-p P]
                [--top-k K] [--seed S] [--ignore-eos] [--chunk-size C] [--dtype fp32|fp16|int4] [--kv-cache-dtype auto|fp32|fp16] [--threads N]
                [--runtime js|native] [--onnx-cache DIR|none] [--speculative off|ngram] [--spec-tokens K] [--json]`;

export interface GenerateArgs {
  modelDir: string;
  promptIds: number[];
  maxNewTokens: number;
  /** 0 = greedy (argmax, lowest id on ties); > 0 samples with the server's Sampler. */
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  ignoreEos: boolean;
  chunkSize?: number;
  dtype: WeightFormat;
  kvCacheDtype: KvCacheDtype;
  /** The session: onnxruntime-node's or the native addon's; undefined: as the backend chooses (runtime-choice.ts). */
  runtime: SessionRuntime | undefined;
  threads: number;
  onnxCacheDir?: string | null;
  /** Speculative decoding by prompt lookup (default off); specTokens drafts at most per step. */
  speculative: 'off' | 'ngram';
  specTokens: number;
  json: boolean;
}

function integerFlag(value: string | undefined, flag: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!/^\d+$/.test(value.trim()) || parsed < min) throw new UsageError(`--${flag} must be an integer >= ${min}, got "${value}"`);
  return parsed;
}

export function parseGenerateArgs(argv: string[]): GenerateArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        model: { type: 'string' },
        'prompt-ids': { type: 'string' },
        prompt: { type: 'string' },
        'max-new-tokens': { type: 'string' },
        temperature: { type: 'string' },
        'top-p': { type: 'string' },
        'top-k': { type: 'string' },
        seed: { type: 'string' },
        'ignore-eos': { type: 'boolean' },
        'chunk-size': { type: 'string' },
        dtype: { type: 'string' },
        'kv-cache-dtype': { type: 'string' },
        threads: { type: 'string' },
        runtime: { type: 'string' },
        'onnx-cache': { type: 'string' },
        speculative: { type: 'string' },
        'spec-tokens': { type: 'string' },
        json: { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (!values.model) throw new UsageError('--model DIR is required');
  if (values.prompt !== undefined)
    throw new UsageError("--prompt (text) needs a tokenizer: run it as `npm run generate`, which tokenizes with the model folder's tokenizer");
  if (!values['prompt-ids']) throw new UsageError('--prompt-ids is required (comma-separated token ids)');
  const promptIds = values['prompt-ids'].split(',').map((part) => {
    if (!/^\s*\d+\s*$/.test(part)) throw new UsageError(`--prompt-ids must be comma-separated non-negative integers, got "${part}"`);
    return Number(part);
  });
  const temperature = values.temperature === undefined ? 0 : Number(values.temperature);
  if (!Number.isFinite(temperature) || temperature < 0) throw new UsageError(`--temperature must be a number >= 0, got "${values.temperature}"`);
  const topP = values['top-p'] === undefined ? 1 : Number(values['top-p']);
  if (!(topP > 0 && topP <= 1)) throw new UsageError(`--top-p must be in (0, 1], got "${values['top-p']}"`);
  const dtype = values.dtype ?? 'fp32';
  if (dtype !== 'fp32' && dtype !== 'fp16' && dtype !== 'int4') throw new UsageError(`--dtype must be fp32, fp16 or int4, got "${dtype}"`);
  const kvCacheDtype = values['kv-cache-dtype'] ?? 'auto';
  if (kvCacheDtype !== 'auto' && kvCacheDtype !== 'fp32' && kvCacheDtype !== 'fp16')
    throw new UsageError(`--kv-cache-dtype must be auto, fp32 or fp16, got "${kvCacheDtype}"`);
  const runtime = values.runtime;
  if (runtime !== undefined && runtime !== 'js' && runtime !== 'native') throw new UsageError(`--runtime must be js or native, got "${runtime}"`);
  const speculative = values.speculative ?? 'off';
  if (speculative !== 'off' && speculative !== 'ngram') throw new UsageError(`--speculative must be off or ngram, got "${speculative}"`);
  if (values['spec-tokens'] !== undefined && speculative === 'off') throw new UsageError('--spec-tokens needs --speculative ngram');
  const specTokens = integerFlag(values['spec-tokens'], 'spec-tokens', 1) ?? 4;
  if (specTokens > 16) throw new UsageError(`--spec-tokens must be at most 16, got "${specTokens}"`);
  const cache = values['onnx-cache'];
  return {
    modelDir: values.model,
    promptIds,
    maxNewTokens: integerFlag(values['max-new-tokens'], 'max-new-tokens', 0) ?? 32,
    temperature,
    topP,
    topK: integerFlag(values['top-k'], 'top-k', 0) ?? 0,
    seed: integerFlag(values.seed, 'seed', 0) ?? 0,
    ignoreEos: values['ignore-eos'] ?? false,
    chunkSize: integerFlag(values['chunk-size'], 'chunk-size', 1),
    dtype,
    kvCacheDtype,
    runtime,
    threads: integerFlag(values.threads, 'threads', 1) ?? os.availableParallelism(),
    onnxCacheDir: cache === undefined ? undefined : cache === 'none' ? null : cache,
    speculative,
    specTokens,
    json: values.json ?? false,
  };
}
