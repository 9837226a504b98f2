// The small random Mistral-shaped model the stack serves when no checkpoint is given, and the generator
// that writes it (and any other random Mistral config, e.g. for tests and benchmarks) as a checkpoint folder.

import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configFromHuggingFace, type ModelConfig } from './config';
import { Checkpoint } from './checkpoint';
import { mistralTensors, type TensorSpec } from './mistral-tensors';
import { SafetensorsFile, writeSafetensors, type FloatDtype } from './safetensors';
import { SeededRandom, hashSeed } from './seeded-random';

/** Hugging Face config.json of the default model: Mistral's architecture (GQA, sliding window) at ~19M parameters. */
export const DEFAULT_MODEL_CONFIG = {
  architectures: ['MistralForCausalLM'],
  model_type: 'mistral',
  hidden_act: 'silu',
  vocab_size: 32000,
  hidden_size: 256,
  intermediate_size: 768,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  head_dim: 32,
  sliding_window: 128,
  max_position_embeddings: 4096,
  rope_theta: 10000.0,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: 'float32',
} as const;

/**
 * The built-in v3 model (`npm start -- --model builtin-v3`): the default model's shape with Mistral 7B v0.3's
 * vocabulary (32768 ids, tool-call control tokens) and, like v0.3, no sliding window.
 */
export const BUILTIN_V3_MODEL_CONFIG = { ...DEFAULT_MODEL_CONFIG, vocab_size: 32768, sliding_window: null } as const;

/** The ~125M-parameter benchmark shape (GPT-2-small-sized, with Mistral's GQA and window). */
export const BENCH_125M_CONFIG = {
  ...DEFAULT_MODEL_CONFIG,
  hidden_size: 768,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_key_value_heads: 4,
  head_dim: 64,
  sliding_window: 4096,
} as const;

export const DEFAULT_MODEL_SEED = 20231010;

/** Where `npm start`, the backend's --default-model and the tests keep the generated default model (git-ignored). */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../../../.models/mistral-tiny-random', import.meta.url));
/** Where `npm start -- --model builtin-v3` and the function-calling end-to-end test keep the built-in v3 model. */
export const BUILTIN_V3_MODEL_DIR = fileURLToPath(new URL('../../../../.models/mistral-tiny-random-v3', import.meta.url));

/** Written into the safetensors metadata so a folder we generated (any version) can be told from a user's checkpoint. */
const GENERATOR_NAME = 'mistral-edge-serve writeRandomModel';
/** Bumped whenever the same seed would give different weights, so older generated folders are regenerated. */
const GENERATOR = `${GENERATOR_NAME} v2`;

const TORCH_DTYPES: Record<FloatDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * Scales chosen so a random model is not degenerate: unit-variance embeddings, projections scaled by
 * 1/sqrt(fan-in) (activations keep their size through the layers, logits have std ~1, so greedy decoding
 * wanders instead of locking onto one token), and norm weights near 1 but not exactly 1 (so a missing
 * norm weight in an engine shows up in comparisons).
 */
function randomTensor(spec: TensorSpec, seed: number): Float32Array {
  const random = new SeededRandom(hashSeed(seed, spec.name));
  const values = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
  if (spec.kind === 'embedding') return random.fillNormal(values, 1);
  if (spec.kind === 'norm') return random.fillNormal(values, 0.1, 1);
  return random.fillNormal(values, 1 / Math.sqrt(spec.shape[1]));
}

/** The config.json written beside weights of `dtype`. */
function configJson(hfConfig: Record<string, unknown>, dtype: FloatDtype): Record<string, unknown> {
  return { ...hfConfig, torch_dtype: TORCH_DTYPES[dtype] };
}

/** The weights writeRandomModel writes for `config` and `seed`, in memory (same values as its F32 file). */
export function randomModelWeights(config: ModelConfig, seed: number): Map<string, Float32Array> {
  return new Map(mistralTensors(config).map((spec) => [spec.name, randomTensor(spec, seed)]));
}

/**
 * Writes config.json + model.safetensors with deterministic random weights for any Mistral config.
 * Replaces any config.json and model.safetensors already there. Files are written under temporary names and
 * renamed, config.json last, so a crash never leaves a folder that opens as complete. Returns the absolute path.
 */
export async function writeRandomModel(dir: string, hfConfig: Record<string, unknown>, seed: number, opts: { dtype?: FloatDtype } = {}): Promise<string> {
  const dtype = opts.dtype ?? 'F32';
  const json = configJson(hfConfig, dtype);
  const config = configFromHuggingFace(json);
  const folder = resolve(dir);
  await mkdir(folder, { recursive: true });
  const suffix = `.tmp-${process.pid}-${hashSeed(seed, String(Date.now()))}`;
  const weightsPath = join(folder, 'model.safetensors');
  const configPath = join(folder, 'config.json');
  try {
    // A previous config.json goes first, so the folder is incomplete while the new weights land.
    await rm(configPath, { force: true });
    await writeSafetensors(
      weightsPath + suffix,
      mistralTensors(config).map((spec) => ({ name: spec.name, shape: spec.shape, dtype, data: () => randomTensor(spec, seed) })),
      { format: 'pt', generator: GENERATOR, seed: String(seed) },
    );
    await rename(weightsPath + suffix, weightsPath);
    await writeFile(configPath + suffix, `${JSON.stringify(json, null, 2)}\n`);
    await rename(configPath + suffix, configPath);
  } finally {
    await rm(weightsPath + suffix, { force: true });
    await rm(configPath + suffix, { force: true });
  }
  return folder;
}

/** True when `folder`'s model.safetensors was written by writeRandomModel (any version, any seed). */
export async function isGeneratedModel(folder: string): Promise<boolean> {
  try {
    const weights = await SafetensorsFile.open(join(folder, 'model.safetensors'));
    const generator = weights.metadata.generator;
    await weights.close();
    return generator?.startsWith(GENERATOR_NAME) ?? false;
  } catch {
    return false;
  }
}

/** 'complete': what writeRandomModel would write; 'stale': generated but different or broken; 'foreign': someone else's. */
async function inspectFolder(folder: string, expectedConfig: Record<string, unknown>, seed: number): Promise<'complete' | 'stale' | 'foreign'> {
  let metadata: Record<string, string>;
  try {
    const weights = await SafetensorsFile.open(join(folder, 'model.safetensors'));
    metadata = weights.metadata;
    await weights.close();
  } catch {
    return 'stale'; // missing or unreadable weights: nothing worth keeping
  }
  if (!metadata.generator?.startsWith(GENERATOR_NAME)) return 'foreign';
  try {
    const onDisk = JSON.parse(await readFile(join(folder, 'config.json'), 'utf-8'));
    const checkpoint = await Checkpoint.open(folder);
    await checkpoint.close();
    const same = metadata.generator === GENERATOR && metadata.seed === String(seed) && JSON.stringify(onDisk) === JSON.stringify(expectedConfig);
    return same ? 'complete' : 'stale';
  } catch {
    return 'stale';
  }
}

/**
 * writeRandomModel, skipped when `dir` already holds exactly that model (benchmarks cache the 125M shape this way).
 * Generates when the folder is missing, incomplete or holds another generated model; refuses to overwrite
 * weights that writeRandomModel did not write. Returns the folder's absolute path.
 */
export async function ensureRandomModel(dir: string, hfConfig: Record<string, unknown>, seed: number, opts: { dtype?: FloatDtype } = {}): Promise<string> {
  const folder = resolve(dir);
  const state = await inspectFolder(folder, configJson(hfConfig, opts.dtype ?? 'F32'), seed);
  if (state === 'complete') return folder;
  if (state === 'foreign') {
    throw new Error(`${folder}: holds a model.safetensors that writeRandomModel did not write; refusing to overwrite it`);
  }
  return writeRandomModel(folder, hfConfig, seed, opts);
}

/** Makes sure `dir` holds the default model (generated in about a second when needed). Returns the absolute path. */
export async function ensureDefaultModel(dir: string): Promise<string> {
  return ensureRandomModel(dir, DEFAULT_MODEL_CONFIG, DEFAULT_MODEL_SEED);
}

/** Makes sure `dir` holds the built-in v3 model (generated once, like the default model). Returns the absolute path. */
export async function ensureBuiltinV3Model(dir: string): Promise<string> {
  return ensureRandomModel(dir, BUILTIN_V3_MODEL_CONFIG, DEFAULT_MODEL_SEED);
}
