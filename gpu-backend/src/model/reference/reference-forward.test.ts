import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../checkpoint/checkpoint';
import { configFromHuggingFace, type ModelConfig } from '../checkpoint/config';
import { randomModelWeights, writeRandomModel } from '../checkpoint/default-model';
import { ReferenceModel } from './reference-forward';

const FIXTURES = process.env.FIXTURES_DIR ?? resolve(process.cwd(), '../shared/fixtures');
// Published greedy continuation of llama2.c's stories260K from BOS (see ../shared/README.md).
const STORIES_GREEDY_PREFIX = [461, 461, 401, 401, 401, 461, 378, 455];

function tinyConfig(overrides: Record<string, unknown>): ModelConfig {
  return configFromHuggingFace({
    vocab_size: 40,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    sliding_window: null,
    rms_norm_eps: 1e-5,
    ...overrides,
  });
}

function maxAbsDifference(a: Float64Array, b: Float64Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

function argmax(values: Float64Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

describe('ReferenceModel on the stories260k checkpoint', () => {
  let full: ReferenceModel;
  let continuation: number[];
  beforeAll(async () => {
    full = await ReferenceModel.load(resolve(FIXTURES, 'stories260k'));
    continuation = full.greedy([1], 40, { ignoreEos: true });
  });

  it('greedy decoding from BOS reproduces the published continuation', () => {
    expect(continuation.slice(0, 8)).toEqual(STORIES_GREEDY_PREFIX);
  });

  it('forward() logits agree with greedy() at every position (teacher forcing)', () => {
    const logits = full.forward([1, ...continuation.slice(0, 11)]);
    expect(logits).toHaveLength(12);
    expect(logits[0]).toHaveLength(512);
    expect(logits.map(argmax)).toEqual(continuation.slice(0, 12));
  });

  it('runs 100 positions well under a second', () => {
    const tokenIds = Array.from({ length: 100 }, (_, i) => (i * 37) % 512);
    const start = performance.now();
    full.forward(tokenIds);
    expect(performance.now() - start).toBeLessThan(1000);
  });

  for (const window of [16, 32]) {
    it(`sliding window ${window}: equals full attention for the first ${window} positions, differs from position ${window} on`, async () => {
      const windowed = await ReferenceModel.load(resolve(FIXTURES, `stories260k-swa${window}`));
      expect(windowed.config.slidingWindow).toBe(window);
      const tokenIds = [1, ...continuation];
      const fullLogits = full.forward(tokenIds);
      const windowLogits = windowed.forward(tokenIds);
      for (let position = 0; position < tokenIds.length; position++) {
        const difference = maxAbsDifference(fullLogits[position], windowLogits[position]);
        if (position < window) expect(difference, `position ${position}`).toBe(0);
        else expect(difference, `position ${position}`).toBeGreaterThan(1e-6);
      }
    });
  }

  it('stops after the end-of-sequence id unless told to ignore it', async () => {
    const stopAt401 = ReferenceModel.fromWeights({ ...full.config, eosTokenId: 401 }, await loadWeights());
    expect(stopAt401.greedy([1], 8)).toEqual([461, 461, 401]);
    expect(stopAt401.greedy([1], 8, { ignoreEos: true })).toEqual(STORIES_GREEDY_PREFIX);
    expect(stopAt401.greedy([1], 0)).toEqual([]);
    expect(() => stopAt401.greedy([], 3)).toThrow('empty prompt');
    expect(() => stopAt401.forward([1, 512])).toThrow('token id 512');
  });
});

async function loadWeights(): Promise<Map<string, Float32Array>> {
  const checkpoint = await Checkpoint.open(resolve(FIXTURES, 'stories260k'));
  const weights = new Map<string, Float32Array>();
  for (const name of checkpoint.tensorNames()) weights.set(name, await checkpoint.readFloat32(name));
  await checkpoint.close();
  return weights;
}

describe('ReferenceModel on tiny random weights', () => {
  it('one layer, window W: the token at distance W-1 reaches the last position, the token at distance W does not', () => {
    for (const window of [3, 5]) {
      const config = tinyConfig({ sliding_window: window });
      const model = ReferenceModel.fromWeights(config, randomModelWeights(config, window));
      const tokenIds = [1, 7, 12, 3, 25, 9, 31, 4, 18, 22];
      const last = tokenIds.length - 1;
      const baseline = model.forward(tokenIds)[last];
      const perturbed = (distance: number) => {
        const changed = [...tokenIds];
        changed[last - distance] = (changed[last - distance] + 11) % config.vocabSize;
        return model.forward(changed)[last];
      };
      expect(maxAbsDifference(baseline, perturbed(window - 1)), `W=${window}, distance W-1`).toBeGreaterThan(1e-6);
      expect(maxAbsDifference(baseline, perturbed(window)), `W=${window}, distance W`).toBe(0);
      expect(maxAbsDifference(baseline, perturbed(window + 2)), `W=${window}, distance W+2`).toBe(0);
    }
  });

  it('a window at least as long as the sequence changes nothing', () => {
    const fullConfig = tinyConfig({ num_hidden_layers: 2 });
    const weights = randomModelWeights(fullConfig, 3);
    const tokenIds = [1, 5, 9, 13, 17, 21];
    const fullLogits = ReferenceModel.fromWeights(fullConfig, weights).forward(tokenIds);
    const windowLogits = ReferenceModel.fromWeights(tinyConfig({ num_hidden_layers: 2, sliding_window: 6 }), weights).forward(tokenIds);
    expect(windowLogits).toEqual(fullLogits);
  });

  it('GQA: query head h reads kv head floor(h / group), same as multi-head attention with kv heads repeated', () => {
    for (const keyValueHeadCount of [1, 2, 4]) {
      const gqaConfig = tinyConfig({ num_hidden_layers: 2, num_attention_heads: 8, num_key_value_heads: keyValueHeadCount });
      const mhaConfig = tinyConfig({ num_hidden_layers: 2, num_attention_heads: 8, num_key_value_heads: 8 });
      const weights = randomModelWeights(gqaConfig, 11);
      const expanded = new Map(weights);
      const group = 8 / keyValueHeadCount;
      const rowWidth = 16 * 8; // one head's rows: headDim rows of hiddenSize
      for (const name of [...weights.keys()].filter((n) => /[kv]_proj/.test(n))) {
        const source = weights.get(name)!; // [kvHeads * headDim, hidden]
        const target = new Float32Array(8 * rowWidth); // [queryHeads * headDim, hidden]
        for (let head = 0; head < 8; head++)
          target.set(source.subarray(Math.floor(head / group) * rowWidth, (Math.floor(head / group) + 1) * rowWidth), head * rowWidth);
        expanded.set(name, target);
      }
      const tokenIds = [1, 2, 3, 30, 20, 10];
      const gqa = ReferenceModel.fromWeights(gqaConfig, weights).forward(tokenIds);
      const mha = ReferenceModel.fromWeights(mhaConfig, expanded).forward(tokenIds);
      for (let t = 0; t < tokenIds.length; t++) expect(maxAbsDifference(gqa[t], mha[t])).toBeLessThan(1e-12);
    }
  });

  it('tied embeddings use the embedding matrix as the output projection', () => {
    const untiedConfig = tinyConfig({});
    const weights = randomModelWeights(untiedConfig, 5);
    weights.set('lm_head.weight', weights.get('model.embed_tokens.weight')!);
    const tiedWeights = new Map(weights);
    tiedWeights.delete('lm_head.weight');
    const tokenIds = [3, 1, 4, 1, 5];
    const tied = ReferenceModel.fromWeights(tinyConfig({ tie_word_embeddings: true }), tiedWeights).forward(tokenIds);
    expect(tied).toEqual(ReferenceModel.fromWeights(untiedConfig, weights).forward(tokenIds));
  });

  it('loads from disk exactly the weights randomModelWeights gives in memory', async () => {
    const hf = { vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8 };
    const dir = await writeRandomModel(join(mkdtempSync(join(tmpdir(), 'reference-test-')), 'tiny'), hf, 9);
    try {
      const fromDisk = await ReferenceModel.load(dir);
      const inMemory = ReferenceModel.fromWeights(fromDisk.config, randomModelWeights(fromDisk.config, 9));
      expect(fromDisk.forward([1, 2, 3])).toEqual(inMemory.forward([1, 2, 3]));
    } finally {
      rmSync(resolve(dir, '..'), { recursive: true, force: true });
    }
  });

  it('rejects missing or mis-sized weights by name', () => {
    const config = tinyConfig({});
    const weights = randomModelWeights(config, 1);
    weights.set('model.norm.weight', new Float32Array(3));
    expect(() => ReferenceModel.fromWeights(config, weights)).toThrow('"model.norm.weight" has 3 values, expected 16');
    weights.delete('model.norm.weight');
    expect(() => ReferenceModel.fromWeights(config, weights)).toThrow('missing weight "model.norm.weight"');
  });
});
