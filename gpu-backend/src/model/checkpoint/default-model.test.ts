import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from './checkpoint';
import { configFromHuggingFace } from './config';
import {
  BENCH_125M_CONFIG,
  BUILTIN_V3_MODEL_DIR,
  DEFAULT_MODEL_CONFIG,
  DEFAULT_MODEL_DIR,
  ensureBuiltinV3Model,
  ensureDefaultModel,
  ensureRandomModel,
  writeRandomModel,
} from './default-model';
import { ReferenceModel } from '../reference/reference-forward';
import { writeSafetensors } from './safetensors';
import { SeededRandom, hashSeed } from './seeded-random';

const root = mkdtempSync(join(tmpdir(), 'default-model-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('SeededRandom', () => {
  it('is reproducible and draws standard normals', () => {
    const a = new SeededRandom(42).fillNormal(new Float32Array(20_000), 1);
    const b = new SeededRandom(42).fillNormal(new Float32Array(20_000), 1);
    expect(a).toEqual(b);
    expect(new SeededRandom(43).fillNormal(new Float32Array(4), 1)).not.toEqual(a.subarray(0, 4));
    const mean = a.reduce((sum, v) => sum + v, 0) / a.length;
    const variance = a.reduce((sum, v) => sum + (v - mean) ** 2, 0) / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
    expect(hashSeed(1, 'a')).not.toBe(hashSeed(1, 'b'));
    expect(hashSeed(1, 'a')).not.toBe(hashSeed(2, 'a'));
  });
});

describe('built-in v3 model', () => {
  it("is the default model's shape with v0.3's vocabulary and no window, in a folder of its own, generated once", async () => {
    expect(BUILTIN_V3_MODEL_DIR).not.toBe(DEFAULT_MODEL_DIR);
    const folder = await ensureBuiltinV3Model(join(root, 'v3'));
    const checkpoint = await Checkpoint.open(folder);
    expect(checkpoint.config).toMatchObject({ vocabSize: 32768, hiddenSize: 256, layerCount: 4, slidingWindow: null, bosTokenId: 1, eosTokenId: 2 });
    await checkpoint.close();
    const before = statSync(join(folder, 'model.safetensors')).ino;
    expect(await ensureBuiltinV3Model(folder)).toBe(folder);
    expect(statSync(join(folder, 'model.safetensors')).ino).toBe(before);
  });
});

describe('default model', () => {
  let first: string;
  beforeAll(async () => {
    first = await ensureDefaultModel(join(root, 'first'));
  });

  it('has the documented shape and passes checkpoint validation', async () => {
    const checkpoint = await Checkpoint.open(first);
    expect(checkpoint.config).toMatchObject({
      vocabSize: 32000,
      hiddenSize: 256,
      layerCount: 4,
      queryHeadCount: 8,
      keyValueHeadCount: 2,
      headDim: 32,
      intermediateSize: 768,
      slidingWindow: 128,
      maxPositions: 4096,
      ropeTheta: 10000,
      rmsNormEps: 1e-5,
      bosTokenId: 1,
      eosTokenId: 2,
      tieWordEmbeddings: false,
    });
    expect(checkpoint.tensorDtype('lm_head.weight')).toBe('F32');
    const embedding = await checkpoint.readFloat32('model.embed_tokens.weight');
    const std = Math.sqrt(embedding.reduce((sum, v) => sum + v * v, 0) / embedding.length);
    expect(std).toBeGreaterThan(0.95);
    expect(std).toBeLessThan(1.05);
    await checkpoint.close();
  });

  it('is byte-identical when generated again in another folder', async () => {
    const second = await ensureDefaultModel(join(root, 'second'));
    expect(readFileSync(join(second, 'config.json'))).toEqual(readFileSync(join(first, 'config.json')));
    expect(readFileSync(join(second, 'model.safetensors')).equals(readFileSync(join(first, 'model.safetensors')))).toBe(true);
  });

  it('a second ensureDefaultModel leaves the complete folder alone', async () => {
    const weights = join(first, 'model.safetensors');
    const before = statSync(weights).ino;
    expect(await ensureDefaultModel(first)).toBe(first);
    expect(statSync(weights).ino).toBe(before);
  });

  it('decodes greedily without collapsing onto one token', async () => {
    const model = await ReferenceModel.load(first);
    const generated = model.greedy([1], 12, { ignoreEos: true });
    expect(new Set(generated).size).toBeGreaterThanOrEqual(8);
  });
});

describe('ensureRandomModel', () => {
  const tiny = { ...DEFAULT_MODEL_CONFIG, vocab_size: 50, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 1 };

  it('keeps a complete folder, regenerates an incomplete or outdated one, refuses to overwrite a foreign one', async () => {
    const reference = await writeRandomModel(join(root, 'ensure-reference'), tiny, 4);
    const expected = readFileSync(join(reference, 'model.safetensors'));
    const dir = join(root, 'ensure');
    const weights = join(dir, 'model.safetensors');
    await ensureRandomModel(dir, tiny, 4);
    expect(readFileSync(weights).equals(expected)).toBe(true);
    const before = statSync(weights).ino;
    await ensureRandomModel(dir, tiny, 4);
    expect(statSync(weights).ino).toBe(before);

    truncateSync(weights, 1000);
    await ensureRandomModel(dir, tiny, 4);
    expect(readFileSync(weights).equals(expected)).toBe(true);
    unlinkSync(join(dir, 'config.json'));
    await ensureRandomModel(dir, tiny, 4);
    await (await Checkpoint.open(dir)).close();

    // Another seed, dtype or generator version means different weights: regenerate.
    await ensureRandomModel(dir, tiny, 5);
    expect(readFileSync(weights).equals(expected)).toBe(false);
    await ensureRandomModel(dir, tiny, 4, { dtype: 'BF16' });
    expect(statSync(weights).size).toBeLessThan(expected.byteLength);
    await writeSafetensors(weights, [{ name: 'x', shape: [1], dtype: 'F32', data: new Float32Array(1) }], {
      generator: 'mistral-edge-serve writeRandomModel v1',
      seed: '4',
    });
    await ensureRandomModel(dir, tiny, 4);
    expect(readFileSync(weights).equals(expected)).toBe(true);

    const foreign = join(root, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'config.json'), JSON.stringify(tiny));
    await writeSafetensors(join(foreign, 'model.safetensors'), [{ name: 'x', shape: [1], dtype: 'F32', data: new Float32Array(1) }]);
    await expect(ensureRandomModel(foreign, tiny, 4)).rejects.toThrow('refusing to overwrite');
    await expect(ensureDefaultModel(foreign)).rejects.toThrow('refusing to overwrite');
  });
});

describe('writeRandomModel', () => {
  it('writes any Mistral config: GQA ratios, head sizes, with and without a window', async () => {
    for (const [ratio, headDim, window] of [
      [1, 8, null],
      [2, 16, 4],
      [4, 32, null],
      [2, 64, 8],
    ] as const) {
      const hf = {
        ...DEFAULT_MODEL_CONFIG,
        vocab_size: 50,
        hidden_size: 24,
        intermediate_size: 40,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 4 / ratio,
        head_dim: headDim,
        sliding_window: window,
      };
      const dir = await writeRandomModel(join(root, `random-${ratio}-${headDim}`), hf, 3);
      const checkpoint = await Checkpoint.open(dir);
      expect(checkpoint.tensorShape('model.layers.1.self_attn.k_proj.weight')).toEqual([(4 / ratio) * headDim, 24]);
      expect(checkpoint.config.slidingWindow).toBe(window);
      await checkpoint.close();
    }
  });

  it('a different seed gives different weights', async () => {
    const tiny = { ...DEFAULT_MODEL_CONFIG, vocab_size: 50, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 1 };
    const a = await writeRandomModel(join(root, 'seed-a'), tiny, 1);
    const b = await writeRandomModel(join(root, 'seed-b'), tiny, 2);
    expect(readFileSync(join(a, 'model.safetensors')).equals(readFileSync(join(b, 'model.safetensors')))).toBe(false);
  });

  it('the benchmark config maps to ~125M parameters', () => {
    const config = configFromHuggingFace(BENCH_125M_CONFIG);
    const { vocabSize, hiddenSize, intermediateSize, layerCount, queryHeadCount, keyValueHeadCount, headDim } = config;
    const perLayer =
      2 * hiddenSize + 2 * hiddenSize * queryHeadCount * headDim + 2 * hiddenSize * keyValueHeadCount * headDim + 3 * hiddenSize * intermediateSize;
    const parameters = 2 * vocabSize * hiddenSize + layerCount * perLayer + hiddenSize;
    expect(parameters).toBeGreaterThan(115e6);
    expect(parameters).toBeLessThan(135e6);
  });
});
