// The backend process: flags -> engine thread (model + scheduler) -> Hono app on @hono/node-server,
// with graceful shutdown on SIGTERM/SIGINT. `npx tsx gpu-backend/src/main.ts --model DIR`.

import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { serve } from '@hono/node-server';
import { configFromHuggingFace, type ModelConfig } from './model/checkpoint/config';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from './model/checkpoint/default-model';
import type { EngineOptions, ExecutionProvider, KvCacheDtype, WeightFormat } from './model/runtime/engine-types';
import { createBackendApp } from './server/app';
import { GenerationClient } from './server/generation-client';
import { GrammarChecker } from './server/grammar/grammar-checker';
import { CPU_KV_MEMORY_SHARE, sequencesForBudget, weightBytes } from './server/kv-budget';
import type { EngineHostOptions, ServingLimits } from './server/worker-messages';

class FlagError extends Error {}

const USAGE = `Usage: npm run backend -- --model DIR [options]     (or: npx tsx gpu-backend/src/main.ts ...)

Token ids in, SSE of token ids out: POST /v1/generate, GET /v1/model, /health, /ready, /metrics.
  --model DIR                Hugging Face checkpoint folder (config.json + *.safetensors)
  --default-model            the built-in random tiny model instead (generated on first use)
  --fake-engine              no model: a deterministic fake (tests)
  --host H, --port P         listen address (default 127.0.0.1, BACKEND_PORT or 8000; 0 = any free port)
  --ep cpu|cuda|webgpu       ONNX Runtime execution provider (default cpu)
  --dtype fp32|fp16|int4     weight format (default fp32; converted once, cached in MODEL_ONNX_CACHE_DIR)
  --kv-cache-dtype auto|fp32|fp16
  --threads N                ONNX Runtime intra-op threads (default: the CPU count)
  --max-sequences N | --kv-memory-gib G   KV cache size (default: from free memory on the CPU)
  --max-model-len N          longest prompt + completion (default: the model's)
  --max-running N, --max-batched-tokens N, --max-queue N, --prefix-cache-size N,
  --chunk-size N, --prefill-stall-factor F   scheduler limits
  --drain-seconds S          on SIGTERM/SIGINT, how long open streams may finish (default 30)
  --log-level info|debug     (default LOG_LEVEL or info)
  -h, --help                 this text
Environment: BACKEND_TOKEN (bearer secret every route but /health and /ready requires; unset: no auth),
BACKEND_PORT, MODEL_ONNX_CACHE_DIR, LOG_LEVEL.`;

const FLAGS = {
  model: { type: 'string' },
  'default-model': { type: 'boolean' },
  'fake-engine': { type: 'boolean' },
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string' },
  ep: { type: 'string', default: 'cpu' },
  threads: { type: 'string' },
  dtype: { type: 'string', default: 'fp32' },
  'kv-cache-dtype': { type: 'string', default: 'auto' },
  'int4-block-size': { type: 'string', default: '32' },
  'max-sequences': { type: 'string' },
  'kv-memory-gib': { type: 'string' },
  'max-model-len': { type: 'string' },
  'max-running': { type: 'string' },
  'max-batched-tokens': { type: 'string' },
  'max-queue': { type: 'string' },
  'prefix-cache-size': { type: 'string' },
  'chunk-size': { type: 'string' },
  'prefill-stall-factor': { type: 'string' },
  'drain-seconds': { type: 'string', default: '30' },
  'log-level': { type: 'string', default: process.env.LOG_LEVEL ?? 'info' },
  help: { type: 'boolean', short: 'h' },
} as const;

function integerFlag(values: Record<string, unknown>, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) throw new FlagError(`--${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return value;
}

function oneOf<T extends string>(values: Record<string, unknown>, name: string, allowed: readonly T[]): T {
  const raw = values[name] as string;
  if (!allowed.includes(raw as T)) throw new FlagError(`--${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
  return raw as T;
}

export interface BackendSettings {
  host: string;
  port: number;
  drainSeconds: number;
  debug: boolean;
  engineHost: EngineHostOptions;
  modelLabel: string;
  /** Folder whose tokenizer the grammar check compiles against; null: no grammars (fake engine). */
  modelDir: string | null;
}

/**
 * --max-sequences derived from a KV memory budget: --kv-memory-gib, or on the CPU half the memory free
 * after the weights. GPU memory is not visible from Node, so there only the flag sets a budget.
 */
function kvBudgetSequences(
  modelDir: string,
  dtype: WeightFormat,
  kvCacheDtype: KvCacheDtype,
  ep: ExecutionProvider,
  maxModelLen: number | undefined,
  kvMemoryGib: number | undefined,
  ceiling: number,
) {
  let config: ModelConfig;
  try {
    config = configFromHuggingFace(JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')));
  } catch {
    return null; // the engine reports a missing or bad config.json with the full message
  }
  const length = Math.min(maxModelLen ?? config.maxPositions, config.maxPositions);
  let budgetBytes: number;
  if (kvMemoryGib !== undefined) budgetBytes = kvMemoryGib * 2 ** 30;
  else if (ep === 'cpu') budgetBytes = CPU_KV_MEMORY_SHARE * Math.max(0, os.freemem() - weightBytes(config, dtype));
  else return null;
  return sequencesForBudget(config, dtype, length, budgetBytes, ceiling, kvCacheDtype);
}

async function parseSettings(argv: string[]): Promise<BackendSettings> {
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new FlagError((error as Error).message);
  }
  const ep = oneOf<ExecutionProvider>(values, 'ep', ['cpu', 'cuda', 'webgpu']);
  const dtype = oneOf<WeightFormat>(values, 'dtype', ['fp32', 'fp16', 'int4']);
  const kvCacheDtype = oneOf<KvCacheDtype>(values, 'kv-cache-dtype', ['auto', 'fp32', 'fp16']);
  const logLevel = oneOf(values, 'log-level', ['info', 'debug']);
  const int4BlockSize = Number(oneOf(values, 'int4-block-size', ['16', '32', '64', '128', '256']));
  // Port 0 picks a free port (tests); the startup line tells which.
  const port = integerFlag(values, 'port', 0, 65535) ?? Number(process.env.BACKEND_PORT || 8000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new FlagError(`BACKEND_PORT must be a port number, got "${process.env.BACKEND_PORT}"`);
  const limits: Partial<ServingLimits> = {};
  const setLimit = (key: keyof ServingLimits, flag: string, min: number) => {
    const value = integerFlag(values, flag, min);
    if (value !== undefined) limits[key] = value;
  };
  setLimit('maxRunning', 'max-running', 1);
  setLimit('maxBatchedTokens', 'max-batched-tokens', 1);
  setLimit('maxQueue', 'max-queue', 0);
  setLimit('prefixCacheSize', 'prefix-cache-size', 0);
  if (values['prefill-stall-factor'] !== undefined) {
    const factor = Number(values['prefill-stall-factor']);
    if (!(factor >= 0 && factor <= 100)) throw new FlagError(`--prefill-stall-factor must be a number from 0 to 100, got "${values['prefill-stall-factor']}"`);
    limits.prefillStallFactor = factor;
  }
  const defaultSequences = Math.max(16, (limits.maxRunning ?? 0) + (limits.prefixCacheSize ?? 4));
  let maxSequences = integerFlag(values, 'max-sequences', 1) ?? defaultSequences;
  let kvMemoryGib: number | undefined;
  if (values['kv-memory-gib'] !== undefined) {
    kvMemoryGib = Number(values['kv-memory-gib']);
    if (!(kvMemoryGib > 0)) throw new FlagError(`--kv-memory-gib must be a positive number, got "${values['kv-memory-gib']}"`);
  }
  const common = { host: values.host as string, port, drainSeconds: integerFlag(values, 'drain-seconds', 0)!, debug: logLevel === 'debug' };

  if (values['fake-engine']) {
    return { ...common, engineHost: { engine: { kind: 'fake', options: { maxSequences, vocabSize: 32000 } }, limits }, modelLabel: 'fake', modelDir: null };
  }
  let modelDir = values.model as string | undefined;
  if (!modelDir && values['default-model']) {
    modelDir = await ensureDefaultModel(DEFAULT_MODEL_DIR);
  }
  if (!modelDir) throw new FlagError('--model DIR is required (or --default-model for the built-in random tiny model)');
  const maxModelLen = integerFlag(values, 'max-model-len', 1);
  if (values['max-sequences'] === undefined) {
    const budget = kvBudgetSequences(modelDir, dtype, kvCacheDtype, ep, maxModelLen, kvMemoryGib, defaultSequences);
    if (budget) {
      maxSequences = budget.maxSequences;
      console.error(`gpu-backend: ${budget.reason} (--kv-memory-gib / --max-sequences to change)`);
    }
  }
  const options: EngineOptions = {
    modelDir,
    dtype,
    executionProvider: ep,
    intraOpThreads: integerFlag(values, 'threads', 1, 1024) ?? os.availableParallelism(),
    maxSequences,
    kvCacheDtype,
    int4BlockSize,
    chunkSize: integerFlag(values, 'chunk-size', 1),
    maxModelLen,
  };
  return {
    ...common,
    engineHost: { engine: { kind: 'onnx', options }, limits },
    modelLabel: `${modelDir} (${ep}, ${dtype}, ${options.intraOpThreads} threads)`,
    modelDir,
  };
}

async function main(): Promise<void> {
  if (process.argv.slice(2).some((arg) => arg === '--help' || arg === '-h')) {
    console.log(USAGE);
    return;
  }
  let settings: BackendSettings;
  try {
    settings = await parseSettings(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof FlagError)) throw error;
    console.error(`gpu-backend: ${error.message}`);
    process.exit(2);
  }
  const client = GenerationClient.inWorker({ ...settings.engineHost, logStepTransfers: settings.debug });
  client.onLog = (level, message) => {
    if (level === 'info' || settings.debug) console.error(`[engine] ${message}`);
  };
  let started = false;
  client.onFailure = (message) => {
    // After startup a dead engine thread cannot recover: exit so the supervisor restarts the replica.
    if (!started) return; // reported by whenReady() below
    console.error(`gpu-backend: engine failed: ${message}`);
    process.exit(1);
  };
  const grammarChecker = new GrammarChecker({
    modelDir: settings.modelDir,
    onCompile: (seconds, cached) => client.metrics.observeGrammarCheck(seconds, cached),
  });
  grammarChecker.warm();
  const app = createBackendApp({ client, grammarChecker, backendToken: process.env.BACKEND_TOKEN || undefined });
  // Listen before the model loads: /health answers at once, /ready once the engine is warm.
  const server = serve({ fetch: app.fetch, hostname: settings.host, port: settings.port });
  try {
    await client.whenReady();
  } catch (error) {
    console.error(`gpu-backend: ${(error as Error).message}`);
    server.close();
    process.exit(1);
  }
  started = true;
  const limits = client.limits!;
  const address = server.address();
  const url = `http://${settings.host}:${typeof address === 'object' && address ? address.port : settings.port}`;
  console.log(
    `gpu-backend listening on ${url}: model ${client.modelInfo!.modelId} from ${settings.modelLabel}, ` +
      `max running ${limits.maxRunning}, max batched tokens ${limits.maxBatchedTokens}, queue ${limits.maxQueue}`,
  );

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`gpu-backend: ${signal}: draining (up to ${settings.drainSeconds} s)`);
    void client
      .drain(settings.drainSeconds * 1000)
      .then(() => grammarChecker.close())
      .then(() => new Promise((resolve) => server.close(resolve)))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

void main();
