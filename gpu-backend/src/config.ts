// The backend's one configuration: flags and environment read and validated here, once, into a
// BackendConfig; every default an operator can change lives in DEFAULTS. A bad value throws a
// ConfigError naming the flag or environment variable. Nothing below main.ts reads process.env.

import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { INT4_BLOCK_SIZE, INT4_BLOCK_SIZES } from './model/graph/quantize-int4';
import type { ExecutionProvider, KvCacheDtype, SessionRuntime, WeightFormat } from './model/runtime/engine-types';
import type { ServingLimits } from './server/worker-messages';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export const DEFAULTS = {
  host: '127.0.0.1',
  port: 8000,
  executionProvider: 'cpu' as ExecutionProvider,
  dtype: 'fp32' as WeightFormat,
  kvCacheDtype: 'auto' as KvCacheDtype,
  int4BlockSize: INT4_BLOCK_SIZE,
  drainSeconds: 30,
  logLevel: 'info' as 'info' | 'debug',
  /** Relative to the working directory. */
  onnxCacheDir: '.models/onnx-cache',
  /** --max-sequences without a KV budget: at least this many, or max running + prefix-cache size. */
  minSequences: 16,
  /** Off until measured never slower (docs/bench/speculative.md). */
  speculative: 'off' as 'off' | 'ngram',
  specTokens: 4,
};

export interface BackendConfig {
  host: string;
  /** 0 picks a free port (tests); the startup line tells which. */
  port: number;
  drainSeconds: number;
  logLevel: 'info' | 'debug';
  /** Bearer secret every route but /health and /ready requires; undefined: no auth. */
  backendToken: string | undefined;
  /** 'fake': no model (tests); 'default': the built-in random tiny model; 'checkpoint': `modelDir`. */
  model: { kind: 'fake' } | { kind: 'default' } | { kind: 'checkpoint'; modelDir: string };
  /** The id clients send and /v1/model reports; undefined: the model folder's name. */
  modelId: string | undefined;
  executionProvider: ExecutionProvider;
  /** Undefined on the CPU without --runtime: chosen once the model's config is read (runtime-choice.ts). */
  runtime: SessionRuntime | undefined;
  /** --runtime native on cuda: decode replays one CUDA graph per batch bucket (EngineOptions.cudaGraphs). */
  cudaGraphs: boolean;
  dtype: WeightFormat;
  kvCacheDtype: KvCacheDtype;
  int4BlockSize: number;
  intraOpThreads: number;
  /** Absolute folder of cached ONNX graphs. */
  onnxCacheDir: string;
  /** Resident KV cache only: file prefix for an ONNX Runtime per-op profile. */
  profilePrefix: string | undefined;
  /** KV cache rows; undefined: from the KV budget (kvMemoryGib, or free memory on the CPU), else `defaultSequences`. */
  maxSequences: number | undefined;
  defaultSequences: number;
  kvMemoryGib: number | undefined;
  maxModelLen: number | undefined;
  chunkSize: number | undefined;
  /** Speculative decoding: drafts by prompt lookup, at most this many per step (0 when --speculative off). */
  speculativeTokens: number;
  /** Scheduler limits the operator gave; the rest follow from the engine (servingLimits). */
  limits: Partial<ServingLimits>;
}

export const USAGE = `Usage: npm run backend -- --model DIR [options]     (or: npx tsx gpu-backend/src/main.ts ...)

Token ids in, SSE of token ids out: POST /v1/generate, GET /v1/model, /health, /ready, /metrics.
  --model DIR                Hugging Face checkpoint folder (config.json + *.safetensors)
  --default-model            the built-in random tiny model instead (generated on first use)
  --model-id NAME            the id clients send and /v1/model reports (default: the model folder's name)
  --fake-engine              no model: a deterministic fake (tests)
  --host H, --port P         listen address (default ${DEFAULTS.host}, BACKEND_PORT or ${DEFAULTS.port}; 0 = any free port)
  --ep cpu|cuda|webgpu       ONNX Runtime execution provider (default ${DEFAULTS.executionProvider})
  --runtime js|native        session: onnxruntime-node's, or the native addon's with the KV cache bound
                             in place (cpu, cuda; npm run build:native builds it) (default native
                             on cuda, whose KV cache then stays on the device; js on webgpu; on the
                             cpu native (faster) unless the model's sliding window is shorter than
                             --max-model-len, --kv-cache-dtype converts, --speculative is on, or
                             the addon is not built)
  --cuda-graphs on|off       cuda + native: decode replays one CUDA graph per batch bucket (default on;
                             the start-up line says when ONNX Runtime refuses capture for the graph)
  --dtype fp32|fp16|int4     weight format (default ${DEFAULTS.dtype}; converted once, cached in MODEL_ONNX_CACHE_DIR)
  --kv-cache-dtype auto|fp32|fp16
  --int4-block-size N        int4 weights per fp32 scale: ${INT4_BLOCK_SIZES.join(', ')} (default ${DEFAULTS.int4BlockSize})
  --threads N                ONNX Runtime intra-op threads (default: the CPU count)
  --max-sequences N | --kv-memory-gib G   KV cache size (default: from free memory on the CPU)
  --max-model-len N          longest prompt + completion (default: the model's)
  --max-running N, --max-batched-tokens N, --max-queue N, --prefix-cache-size N,
  --chunk-size N, --prefill-stall-factor F   scheduler limits
  --speculative off|ngram    speculative decoding by prompt lookup (default ${DEFAULTS.speculative}; js or native session)
  --spec-tokens K            most draft tokens verified per step with ngram (default ${DEFAULTS.specTokens})
  --drain-seconds S          on SIGTERM/SIGINT, how long open streams may finish (default ${DEFAULTS.drainSeconds})
  --log-level info|debug     (default LOG_LEVEL or ${DEFAULTS.logLevel})
  -h, --help                 this text
Environment: BACKEND_TOKEN (bearer secret every route but /health and /ready requires; unset: no auth),
BACKEND_PORT, MODEL_ONNX_CACHE_DIR (default ${DEFAULTS.onnxCacheDir}), LOG_LEVEL, RESIDENT_KV_PROFILE (webgpu: per-op profile file prefix).`;

const FLAGS = {
  model: { type: 'string' },
  'model-id': { type: 'string' },
  'default-model': { type: 'boolean' },
  'fake-engine': { type: 'boolean' },
  host: { type: 'string' },
  port: { type: 'string' },
  ep: { type: 'string' },
  runtime: { type: 'string' },
  'cuda-graphs': { type: 'string' },
  threads: { type: 'string' },
  dtype: { type: 'string' },
  'kv-cache-dtype': { type: 'string' },
  'int4-block-size': { type: 'string' },
  'max-sequences': { type: 'string' },
  'kv-memory-gib': { type: 'string' },
  'max-model-len': { type: 'string' },
  'max-running': { type: 'string' },
  'max-batched-tokens': { type: 'string' },
  'max-queue': { type: 'string' },
  'prefix-cache-size': { type: 'string' },
  'chunk-size': { type: 'string' },
  'prefill-stall-factor': { type: 'string' },
  speculative: { type: 'string' },
  'spec-tokens': { type: 'string' },
  'drain-seconds': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Env = Record<string, string | undefined>;

/** Where ONNX graphs are cached for every command that builds them: MODEL_ONNX_CACHE_DIR or DEFAULTS.onnxCacheDir. */
export function onnxCacheDirFrom(env: Env): string {
  return path.resolve(env.MODEL_ONNX_CACHE_DIR || DEFAULTS.onnxCacheDir);
}

/**
 * A served model's id as clients write it (Hugging Face style, `org/name-v0.2`), or throws naming `setting`.
 * No `@`: the edge reads `<model>@<system prompt name>`; no spaces or controls: it goes into headers and logs.
 */
export function modelIdFrom(raw: string | undefined, setting: string): string | undefined {
  if (raw === undefined) return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/.test(raw))
    throw new ConfigError(`${setting} must be 1-128 letters, digits and . _ : / - (starting with a letter or digit), got "${raw}"`);
  return raw;
}

function integer(raw: string | undefined, setting: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(value) || value < min || value > max)
    throw new ConfigError(`${setting} must be an integer from ${min} to ${max}, got "${raw}"`);
  return value;
}

function oneOf<T extends string>(raw: string | undefined, setting: string, allowed: readonly T[], fallback: T): T {
  if (raw === undefined) return fallback;
  if (!allowed.includes(raw as T)) throw new ConfigError(`${setting} must be one of ${allowed.join(', ')}, got "${raw}"`);
  return raw as T;
}

function scheduleLimits(values: Record<string, string | undefined>): Partial<ServingLimits> {
  const limits: Partial<ServingLimits> = {};
  const set = (key: keyof ServingLimits, value: number | undefined) => value !== undefined && (limits[key] = value);
  set('maxRunning', integer(values['max-running'], '--max-running', 1));
  set('maxBatchedTokens', integer(values['max-batched-tokens'], '--max-batched-tokens', 1));
  set('maxQueue', integer(values['max-queue'], '--max-queue', 0));
  set('prefixCacheSize', integer(values['prefix-cache-size'], '--prefix-cache-size', 0));
  const factor = values['prefill-stall-factor'];
  if (factor !== undefined) {
    if (!(Number(factor) >= 0 && Number(factor) <= 100)) throw new ConfigError(`--prefill-stall-factor must be a number from 0 to 100, got "${factor}"`);
    limits.prefillStallFactor = Number(factor);
  }
  return limits;
}

/**
 * Under onnxruntime-node's session a CUDA KV cache makes a host round trip every step; the native session
 * binds it in place. WebGPU runs only under the JS session. The CPU's choice depends on the model (undefined).
 */
function defaultRuntime(executionProvider: ExecutionProvider): SessionRuntime | undefined {
  return executionProvider === 'cuda' ? 'native' : executionProvider === 'webgpu' ? 'js' : undefined;
}

/** Flags (`argv`, without node and the script) and environment -> a validated BackendConfig. */
export function backendConfigFrom(argv: string[], env: Env): BackendConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const flags = values as Record<string, string | undefined>;
  const int4BlockSizes = INT4_BLOCK_SIZES.map(String);
  const limits = scheduleLimits(flags);
  const speculative = oneOf(flags.speculative, '--speculative', ['off', 'ngram'], DEFAULTS.speculative);
  const specTokens = integer(flags['spec-tokens'], '--spec-tokens', 1, 16) ?? DEFAULTS.specTokens;
  if (flags['spec-tokens'] !== undefined && speculative === 'off') throw new ConfigError('--spec-tokens needs --speculative ngram');
  const speculativeTokens = speculative === 'ngram' ? specTokens : 0;
  if (speculativeTokens > 0) limits.speculativeTokens = speculativeTokens;
  let kvMemoryGib: number | undefined;
  if (flags['kv-memory-gib'] !== undefined) {
    kvMemoryGib = Number(flags['kv-memory-gib']);
    if (!(kvMemoryGib > 0)) throw new ConfigError(`--kv-memory-gib must be a positive number, got "${flags['kv-memory-gib']}"`);
  }
  const model = (): BackendConfig['model'] => {
    if (values['fake-engine']) return { kind: 'fake' };
    if (flags.model) return { kind: 'checkpoint', modelDir: flags.model };
    if (values['default-model']) return { kind: 'default' };
    throw new ConfigError('--model DIR is required (or --default-model for the built-in random tiny model)');
  };
  const executionProvider = oneOf(flags.ep, '--ep', ['cpu', 'cuda', 'webgpu'], DEFAULTS.executionProvider);
  const runtime = flags.runtime === undefined ? defaultRuntime(executionProvider) : oneOf(flags.runtime, '--runtime', ['js', 'native'], 'js');
  const cudaGraphs = oneOf(flags['cuda-graphs'], '--cuda-graphs', ['on', 'off'], 'on') === 'on';
  if (flags['cuda-graphs'] === 'on' && (executionProvider !== 'cuda' || runtime !== 'native')) {
    throw new ConfigError('--cuda-graphs on needs --ep cuda with --runtime native');
  }
  return {
    host: flags.host ?? DEFAULTS.host,
    port: integer(flags.port, '--port', 0, 65535) ?? integer(env.BACKEND_PORT || undefined, 'BACKEND_PORT', 0, 65535) ?? DEFAULTS.port,
    drainSeconds: integer(flags['drain-seconds'], '--drain-seconds', 0) ?? DEFAULTS.drainSeconds,
    logLevel: oneOf(flags['log-level'], '--log-level', ['info', 'debug'], oneOf(env.LOG_LEVEL || undefined, 'LOG_LEVEL', ['info', 'debug'], DEFAULTS.logLevel)),
    backendToken: env.BACKEND_TOKEN || undefined,
    executionProvider,
    runtime,
    cudaGraphs: cudaGraphs && executionProvider === 'cuda' && runtime === 'native',
    dtype: oneOf(flags.dtype, '--dtype', ['fp32', 'fp16', 'int4'], DEFAULTS.dtype),
    kvCacheDtype: oneOf(flags['kv-cache-dtype'], '--kv-cache-dtype', ['auto', 'fp32', 'fp16'], DEFAULTS.kvCacheDtype),
    int4BlockSize: Number(oneOf(flags['int4-block-size'], '--int4-block-size', int4BlockSizes, String(DEFAULTS.int4BlockSize))),
    intraOpThreads: integer(flags.threads, '--threads', 1, 1024) ?? os.availableParallelism(),
    onnxCacheDir: onnxCacheDirFrom(env),
    profilePrefix: env.RESIDENT_KV_PROFILE || undefined,
    maxSequences: integer(flags['max-sequences'], '--max-sequences', 1),
    defaultSequences: Math.max(DEFAULTS.minSequences, (limits.maxRunning ?? 0) + (limits.prefixCacheSize ?? 4)),
    kvMemoryGib,
    maxModelLen: integer(flags['max-model-len'], '--max-model-len', 1),
    chunkSize: integer(flags['chunk-size'], '--chunk-size', 1),
    speculativeTokens,
    limits,
    modelId: modelIdFrom(flags['model-id'], '--model-id'),
    model: model(), // last: a bad value elsewhere is named even without --model
  };
}

/** The scheduler limits for an engine with `sequences` free rows, where the operator gave none. */
export function servingLimits(sequences: number, given: Partial<ServingLimits> = {}): ServingLimits {
  const prefixCacheSize = given.prefixCacheSize ?? (sequences >= 4 ? Math.floor(sequences / 4) : 0);
  const maxRunning = given.maxRunning ?? sequences;
  // Tokens per step when no stream is decoding (time to first token of an idle server); while streams
  // decode, PrefillBudget narrows prefill to what keeps their inter-token latency in check.
  const maxBatchedTokens = given.maxBatchedTokens ?? Math.max(maxRunning, 512);
  return {
    maxRunning,
    maxBatchedTokens,
    maxQueue: given.maxQueue ?? Math.max(16, 4 * maxRunning),
    prefixCacheSize,
    // Blocks of 16 ids (vLLM's default block size): a short system prompt or a short turn still counts.
    prefixBlockTokens: given.prefixBlockTokens ?? 16,
    prefillStallFactor: given.prefillStallFactor ?? 1.5,
    prefillMinTokens: given.prefillMinTokens ?? 8,
    speculativeTokens: given.speculativeTokens ?? 0,
  };
}
