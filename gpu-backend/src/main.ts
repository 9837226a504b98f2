// The backend process: flags -> engine thread (model + scheduler) -> Hono app on @hono/node-server,
// with graceful shutdown on SIGTERM/SIGINT. `npx tsx gpu-backend/src/main.ts --model DIR`.

import os from 'node:os';
import { serve } from '@hono/node-server';
import { type BackendConfig, ConfigError, USAGE, backendConfigFrom } from './config';
import { type ModelConfig, readModelConfig } from './model/checkpoint/config';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from './model/checkpoint/default-model';
import { weightBytes } from './model/graph/weight-bytes';
import { type EngineOptions, type SessionRuntime, computeTypeOf } from './model/runtime/engine-types';
import { chooseRuntime } from './model/runtime/runtime-choice';
import { createBackendApp } from './server/app';
import { GenerationClient } from './server/generation-client';
import { GrammarChecker } from './server/grammar/grammar-checker';
import { CPU_KV_MEMORY_SHARE, sequencesForBudget } from './server/kv-budget';
import type { EngineHostOptions } from './server/worker-messages';

interface BackendSettings {
  config: BackendConfig;
  engineHost: EngineHostOptions;
  modelLabel: string;
  /** Folder whose tokenizer the grammar check compiles against; null: no grammars (fake engine). */
  modelDir: string | null;
}

/**
 * --max-sequences derived from a KV memory budget: --kv-memory-gib, or on the CPU half the memory free
 * after the weights. GPU memory is not visible from Node, so there only the flag sets a budget.
 */
function kvBudgetSequences({ model, maxModelLen }: ModelShape, config: BackendConfig, runtime: SessionRuntime) {
  let budgetBytes: number;
  if (config.kvMemoryGib !== undefined) budgetBytes = config.kvMemoryGib * 2 ** 30;
  else if (config.executionProvider === 'cpu')
    budgetBytes = CPU_KV_MEMORY_SHARE * Math.max(0, os.freemem() - weightBytes(model, config.dtype, config.int4BlockSize));
  else return null;
  const shape = {
    config: model,
    dtype: config.dtype,
    maxModelLen,
    kvCacheDtype: config.kvCacheDtype,
    computeType: computeTypeOf(config.dtype, config.executionProvider),
    runtime,
    draftSlots: config.speculativeTokens,
  };
  return sequencesForBudget(shape, budgetBytes, config.defaultSequences);
}

/** The checkpoint's config and the longest sequence the engine will take (never past the model's positions). */
interface ModelShape {
  model: ModelConfig;
  maxModelLen: number;
}

/** The checkpoint's shape, or null: the engine then reports a missing or bad config.json with the full message. */
function modelShapeOrNull(modelDir: string, config: BackendConfig): ModelShape | null {
  let model: ModelConfig;
  try {
    model = readModelConfig(modelDir);
  } catch {
    return null;
  }
  return { model, maxModelLen: Math.min(config.maxModelLen ?? model.maxPositions, model.maxPositions) };
}

/** The CPU's session when --runtime was not given, said on stderr with the reason. */
function cpuRuntime(shape: ModelShape | null, config: BackendConfig): SessionRuntime {
  if (!shape) return 'js';
  const { runtime, reason } = chooseRuntime(shape.model, { ...config, maxModelLen: shape.maxModelLen, speculative: config.speculativeTokens > 0 });
  console.error(`gpu-backend: ${runtime} session: ${reason} (--runtime to change)`);
  return runtime;
}

/** The validated config -> what the engine thread is started with (the default model is made here on first use). */
async function settingsFor(config: BackendConfig): Promise<BackendSettings> {
  let maxSequences = config.maxSequences ?? config.defaultSequences;
  if (config.model.kind === 'fake') {
    return {
      config,
      engineHost: {
        engine: { kind: 'fake', options: { maxSequences, vocabSize: 32000, speculativeTokens: config.speculativeTokens } },
        limits: config.limits,
        modelId: config.modelId,
      },
      modelLabel: 'fake',
      modelDir: null,
    };
  }
  const modelDir = config.model.kind === 'checkpoint' ? config.model.modelDir : await ensureDefaultModel(DEFAULT_MODEL_DIR);
  const shape = modelShapeOrNull(modelDir, config);
  const runtime = config.runtime ?? cpuRuntime(shape, config);
  if (shape && config.maxSequences === undefined) {
    const budget = kvBudgetSequences(shape, config, runtime);
    if (budget) {
      maxSequences = budget.maxSequences;
      console.error(`gpu-backend: ${budget.reason} (--kv-memory-gib / --max-sequences to change)`);
    }
  }
  const options: EngineOptions = {
    modelDir,
    dtype: config.dtype,
    executionProvider: config.executionProvider,
    runtime,
    cudaGraphs: config.cudaGraphs,
    intraOpThreads: config.intraOpThreads,
    maxSequences,
    kvCacheDtype: config.kvCacheDtype,
    int4BlockSize: config.int4BlockSize,
    chunkSize: config.chunkSize,
    maxModelLen: config.maxModelLen,
    onnxCacheDir: config.onnxCacheDir,
    profilePrefix: config.profilePrefix,
    speculativeTokens: config.speculativeTokens,
  };
  return {
    config,
    engineHost: { engine: { kind: 'onnx', options }, limits: config.limits, modelId: config.modelId },
    modelLabel: `${modelDir} (${config.executionProvider}, ${runtime} session, ${config.dtype}, ${config.intraOpThreads} threads)`,
    modelDir,
  };
}

async function main(): Promise<void> {
  if (process.argv.slice(2).some((arg) => arg === '--help' || arg === '-h')) {
    console.log(USAGE);
    return;
  }
  let config: BackendConfig;
  try {
    config = backendConfigFrom(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`gpu-backend: ${error.message}`);
    process.exit(2);
  }
  const settings = await settingsFor(config);
  const debug = config.logLevel === 'debug';
  const client = GenerationClient.inWorker({ ...settings.engineHost, logStepTransfers: debug });
  client.onLog = (level, message) => {
    if (level === 'info' || debug) console.error(`[engine] ${message}`);
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
  const app = createBackendApp({ client, grammarChecker, backendToken: config.backendToken });
  // Listen before the model loads: /health answers at once, /ready once the engine is warm.
  const server = serve({ fetch: app.fetch, hostname: config.host, port: config.port });
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
  const url = `http://${config.host}:${typeof address === 'object' && address ? address.port : config.port}`;
  console.log(
    `gpu-backend listening on ${url}: model ${client.modelInfo!.modelId} from ${settings.modelLabel}, ` +
      `max running ${limits.maxRunning}, max batched tokens ${limits.maxBatchedTokens}, queue ${limits.maxQueue}`,
  );

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`gpu-backend: ${signal}: draining (up to ${config.drainSeconds} s)`);
    void client
      .drain(config.drainSeconds * 1000)
      .then(() => grammarChecker.close())
      .then(() => new Promise((resolve) => server.close(resolve)))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

void main();
