// ONNX engine vs the float64 reference on random tiny configs: fused GQA and the unfused fallback,
// windows, GQA ratios, head dims, chunked prefill, batched decode, forks and self-consistency.

import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../checkpoint/config';
import { Engine, type EngineLoadOptions } from './engine';
import type { AttentionKind } from '../graph/graph-attention';
import { dequantizeInt4, quantizeInt4 } from '../graph/quantize-int4';
import { ReferenceModel } from '../reference/reference-forward';
import { randomModelWeights as randomWeights } from '../checkpoint/default-model';
import { MapWeightSource, maxRelativeError as relativeError, tinyConfig } from '../reference/test-models';

async function makeEngine(config: ModelConfig, weights: Map<string, Float32Array>, options: Partial<EngineLoadOptions> = {}): Promise<Engine> {
  return Engine.fromWeights(new MapWeightSource(config, weights), {
    modelDir: 'tiny',
    dtype: 'fp32',
    executionProvider: 'cpu',
    intraOpThreads: 1,
    maxSequences: 4,
    onnxCacheDir: null,
    ...options,
  });
}

const promptOf = (length: number, vocabSize: number, salt = 0) => Array.from({ length }, (_, i) => (i * 7 + 3 + salt * 13) % vocabSize);

/** Prefill 9 tokens (chunks of 4), then decode 6: every logits row against the reference. */
async function maxErrorAgainstReference(
  config: ModelConfig,
  options: Partial<EngineLoadOptions> = {},
  seed = 11,
): Promise<{ error: number; attention: AttentionKind }> {
  const weights = randomWeights(config, seed);
  const expected = ReferenceModel.fromWeights(config, weights).forward(promptOf(15, config.vocabSize));
  const engine = await makeEngine(config, weights, { chunkSize: 4, ...options });
  try {
    const tokenIds = promptOf(15, config.vocabSize);
    const sequenceId = engine.createSequence();
    let error = relativeError((await engine.step([{ sequenceId, tokenIds: tokenIds.slice(0, 9) }]))[0], expected[8]);
    for (let position = 9; position < 15; position++) {
      const [logits] = await engine.step([{ sequenceId, tokenIds: [tokenIds[position]] }]);
      error = Math.max(error, relativeError(logits, expected[position]));
    }
    return { error, attention: engine.attention };
  } finally {
    await engine.dispose();
  }
}

describe('Engine vs ReferenceModel (fp32, random tiny configs)', () => {
  const cases: [headDim: number, queryHeads: number, kvHeads: number, window: number | null, attention: AttentionKind][] = [
    [8, 4, 2, 5, 'unfused'],
    [8, 2, 2, null, 'unfused'],
    [16, 2, 2, 4, 'hybrid'],
    [16, 4, 2, null, 'hybrid'],
    [16, 4, 1, 6, 'hybrid'],
    [32, 4, 2, 5, 'hybrid'],
    [64, 4, 1, null, 'hybrid'],
    [64, 2, 2, 7, 'hybrid'],
  ];
  for (const [headDim, queryHeadCount, keyValueHeadCount, slidingWindow, attention] of cases) {
    it(`headDim ${headDim}, ${queryHeadCount}/${keyValueHeadCount} heads, window ${slidingWindow}: ${attention}, rel error < 1e-4`, async () => {
      const config = tinyConfig({ headDim, queryHeadCount, keyValueHeadCount, slidingWindow, hiddenSize: 32 });
      const result = await maxErrorAgainstReference(config);
      expect(result.attention).toBe(attention);
      expect(result.error).toBeLessThan(1e-4);
    });
  }

  it('decoding through the GroupQueryAttention branch is exact too (gqaDecode, window 5)', async () => {
    const config = tinyConfig({ headDim: 32, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow: 5 });
    const result = await maxErrorAgainstReference(config, { gqaDecode: true });
    expect(result.attention).toBe('hybrid');
    expect(result.error).toBeLessThan(1e-4);
  });

  for (const slidingWindow of [4, null]) {
    it(`pure GroupQueryAttention graph (fused, window ${slidingWindow}) is exact`, async () => {
      const config = tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 1, slidingWindow });
      const result = await maxErrorAgainstReference(config, { attention: 'fused' });
      expect(result.attention).toBe('fused');
      expect(result.error).toBeLessThan(1e-4);
    });
  }

  it('the unfused fallback is exact for GQA-compatible heads too (forced, group 4, window 4)', async () => {
    const config = tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 1, slidingWindow: 4 });
    const result = await maxErrorAgainstReference(config, { attention: 'unfused' });
    expect(result.attention).toBe('unfused');
    expect(result.error).toBeLessThan(1e-4);
  });

  it('an fp16 KV cache under fp32 or int4 weights stays within 5e-3 of its own-precision cache, at half the bytes per slot', async () => {
    for (const [config, attention] of [
      [tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow: 5 }), 'hybrid'],
      [tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 1, slidingWindow: null }), 'fused'],
      [tinyConfig({ headDim: 8, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow: 5 }), 'unfused'],
    ] as const) {
      const half = await maxErrorAgainstReference(config, { kvCacheDtype: 'fp16', attention });
      expect(half.attention).toBe(attention);
      expect(half.error).toBeLessThan(5e-3);
      expect(half.error).toBeGreaterThan(1e-7); // the cache really is rounded to fp16
    }
    const config = tinyConfig({ headDim: 16, slidingWindow: 5, hiddenSize: 64, intermediateSize: 96 });
    const weights = randomWeights(config, 11);
    const logitsOf = async (options: Partial<EngineLoadOptions>) => {
      const engine = await makeEngine(config, weights, { dtype: 'int4', int4AccuracyLevel: 0, chunkSize: 4, ...options }); // level 0: no int8 rounding of activations to amplify the difference
      const sequenceId = engine.createSequence();
      const rows = [(await engine.step([{ sequenceId, tokenIds: promptOf(9, config.vocabSize) }]))[0]];
      for (let i = 0; i < 6; i++) rows.push((await engine.step([{ sequenceId, tokenIds: [i + 5] }]))[0]);
      const bytesPerSlot = engine.kvStats().bytesPerSlot;
      await engine.dispose();
      return { rows, bytesPerSlot };
    };
    const [full, half] = [await logitsOf({}), await logitsOf({ kvCacheDtype: 'fp16' })];
    expect(half.bytesPerSlot).toBe(full.bytesPerSlot / 2);
    for (let i = 0; i < full.rows.length; i++) expect(relativeError(half.rows[i], full.rows[i])).toBeLessThan(5e-3);
  });

  it('fp16 stays within 5e-3; int4 within 0.35 of fp32 and, against dequantized weights, 1e-4 (accuracy_level 0) / 0.05 (level 4)', async () => {
    const config = tinyConfig({ headDim: 16, slidingWindow: 5, hiddenSize: 64, intermediateSize: 96 });
    expect((await maxErrorAgainstReference(config, { dtype: 'fp16' })).error).toBeLessThan(5e-3);
    const unfusedConfig = tinyConfig({ headDim: 8, slidingWindow: 5 });
    const unfusedFp16 = await maxErrorAgainstReference(unfusedConfig, { dtype: 'fp16' });
    expect(unfusedFp16.attention).toBe('unfused');
    expect(unfusedFp16.error).toBeLessThan(5e-3);
    for (const int4AccuracyLevel of [0, 4]) {
      const int4 = await maxErrorAgainstReference(config, { dtype: 'int4', int4AccuracyLevel });
      expect(int4.error).toBeLessThan(0.35);
      expect(int4.error).toBeGreaterThan(1e-3); // it really is quantized
    }
    // Against a reference holding the dequantized weights, MatMulNBits at accuracy_level 0 is exact;
    // level 4 also rounds activations to int8 per block.
    const weights = randomWeights(config, 11);
    const dequantized = new Map(weights);
    for (const [name, weight] of weights) {
      // The embedding table is int4 too (rows of hiddenSize, a multiple of the block here).
      if (!/_proj\.weight$|^lm_head\.weight$|^model\.embed_tokens\.weight$/.test(name)) continue;
      const inFeatures = name.includes('down_proj')
        ? config.intermediateSize
        : name.includes('o_proj')
          ? config.queryHeadCount * config.headDim
          : config.hiddenSize;
      const outFeatures = weight.length / inFeatures;
      dequantized.set(name, dequantizeInt4(quantizeInt4(weight, outFeatures, inFeatures), outFeatures, inFeatures));
    }
    const expected = ReferenceModel.fromWeights(config, dequantized).forward(promptOf(9, config.vocabSize))[8];
    for (const [int4AccuracyLevel, bound] of [
      [0, 1e-4],
      [4, 0.05],
    ]) {
      const engine = await makeEngine(config, weights, { dtype: 'int4', int4AccuracyLevel });
      const [logits] = await engine.step([{ sequenceId: engine.createSequence(), tokenIds: promptOf(9, config.vocabSize) }]);
      expect(relativeError(logits, expected)).toBeLessThan(bound);
      await engine.dispose();
    }
  });

  it('int4 at block 64 and 128 (K 64 and 96: padded blocks) is exact against its own dequantized weights at accuracy_level 0', async () => {
    const config = tinyConfig({ headDim: 16, slidingWindow: 5, hiddenSize: 64, intermediateSize: 96 });
    const weights = randomWeights(config, 11);
    for (const int4BlockSize of [64, 128]) {
      const dequantized = new Map(weights);
      for (const [name, weight] of weights) {
        // hiddenSize 64 is a whole block at 64 (int4 embedding), not at 128 (the embedding stays fp32).
        const int4Embedding = name === 'model.embed_tokens.weight' && config.hiddenSize % int4BlockSize === 0;
        if (!/_proj\.weight$|^lm_head\.weight$/.test(name) && !int4Embedding) continue;
        const inFeatures = name.includes('down_proj')
          ? config.intermediateSize
          : name.includes('o_proj')
            ? config.queryHeadCount * config.headDim
            : config.hiddenSize;
        const outFeatures = weight.length / inFeatures;
        dequantized.set(name, dequantizeInt4(quantizeInt4(weight, outFeatures, inFeatures, int4BlockSize), outFeatures, inFeatures));
      }
      const expected = ReferenceModel.fromWeights(config, dequantized).forward(promptOf(9, config.vocabSize))[8];
      const engine = await makeEngine(config, weights, { dtype: 'int4', int4AccuracyLevel: 0, int4BlockSize });
      const [logits] = await engine.step([{ sequenceId: engine.createSequence(), tokenIds: promptOf(9, config.vocabSize) }]);
      expect(relativeError(logits, expected)).toBeLessThan(1e-4);
      await engine.dispose();
    }
  });
});

describe('Engine cache behaviour', () => {
  const config = tinyConfig({ headDim: 16, slidingWindow: 4, layerCount: 2 });
  const weights = randomWeights(config, 5);

  it('refuses fp16 compute for fp32 weights, naming both', async () => {
    await expect(makeEngine(config, weights, { computeType: 'float16' })).rejects.toThrow(/fp32 weights compute in fp32/);
  });

  it('chunked prefill equals single-pass prefill, ring wrapping inside and across chunks', async () => {
    const tokenIds = promptOf(23, config.vocabSize);
    const results: Float32Array[] = [];
    for (const chunkSize of [23, 3, 1]) {
      const engine = await makeEngine(config, weights, { chunkSize });
      const sequenceId = engine.createSequence();
      results.push((await engine.step([{ sequenceId, tokenIds }]))[0].slice());
      await engine.dispose();
    }
    const expected = ReferenceModel.fromWeights(config, weights).forward(tokenIds)[22];
    for (const logits of results) expect(relativeError(logits, expected)).toBeLessThan(1e-4);
    expect(relativeError(results[1], Float64Array.from(results[0]))).toBeLessThan(1e-5);
  });

  it('batched decode of 3 sequences of different lengths equals each alone; forks copy the cache', async () => {
    const engine = await makeEngine(config, weights, { chunkSize: 8 });
    const reference = ReferenceModel.fromWeights(config, weights);
    const prompts = [promptOf(3, 64, 1), promptOf(11, 64, 2), promptOf(6, 64, 3)];
    const ids = prompts.map(() => engine.createSequence());
    await engine.step(prompts.map((tokenIds, i) => ({ sequenceId: ids[i], tokenIds })));
    const fork = engine.forkSequence(ids[1]);
    engine.releaseSequence(ids[0]); // rows compact: the batch below spans moved rows
    const nextTokens = [9, 17, 33];
    const live = [fork, ids[1], ids[2]];
    const logits = await engine.step(live.map((sequenceId, i) => ({ sequenceId, tokenIds: [nextTokens[i]] })));
    const alone = [
      reference.forward([...prompts[1], nextTokens[0]]),
      reference.forward([...prompts[1], nextTokens[1]]),
      reference.forward([...prompts[2], nextTokens[2]]),
    ];
    logits.forEach((row, i) => expect(relativeError(row, alone[i][alone[i].length - 1])).toBeLessThan(1e-4));
    expect(engine.sequenceLength(fork)).toBe(12);
    expect(engine.kvStats().lastStepTransferBytes).toBe(3 * 64 * 4 + 2 * 2 * 3 * 2 * 16 * 4);
    await engine.dispose();
  });

  it('rolling buffer stays at W - 1 slots after 5W tokens and stays exact (KV self-consistency)', async () => {
    const engine = await makeEngine(config, weights, { chunkSize: 4 });
    const W = config.slidingWindow!;
    const prompt = promptOf(6, 64);
    const sequenceId = engine.createSequence();
    let [logits] = await engine.step([{ sequenceId, tokenIds: prompt }]);
    const generated: number[] = [];
    const decodeLogProbs: number[] = [];
    while (prompt.length + generated.length < 5 * W + 3) {
      let best = 0;
      for (let id = 1; id < logits.length; id++) if (logits[id] > logits[best]) best = id;
      generated.push(best);
      decodeLogProbs.push(logSoftmaxAt(logits, best));
      [logits] = await engine.step([{ sequenceId, tokenIds: [best] }]);
      expect(engine.cacheCapacity).toBeLessThanOrEqual(W - 1);
    }
    expect(engine.kvStats().slotsUsed).toBe(W - 1);
    // Re-run prompt + output in one pass on a fresh sequence: per-token log-probs agree within 1e-4.
    const fresh = engine.createSequence();
    const all = await engine.scoreTokens(fresh, [...prompt, ...generated.slice(0, -1)]);
    generated.forEach((tokenId, i) => expect(Math.abs(logSoftmaxAt(all[prompt.length - 1 + i], tokenId) - decodeLogProbs[i])).toBeLessThan(1e-4));
    // And both agree with the reference on the whole run, five windows long (fused path, ring wrapped).
    const expected = ReferenceModel.fromWeights(config, weights).forward([...prompt, ...generated.slice(0, -1)]);
    all.forEach((row, i) => expect(relativeError(row, expected[i])).toBeLessThan(1e-4));
    await engine.dispose();
  });

  it('window boundary (1 layer): a key at distance W-1 changes the output, one at distance W does not', async () => {
    const oneLayer = tinyConfig({ headDim: 16, slidingWindow: 4, layerCount: 1 });
    const engine = await makeEngine(oneLayer, randomWeights(oneLayer, 3), { chunkSize: 16 });
    const base = promptOf(6, 64);
    const changed = [50, ...base.slice(1)];
    const a = await engine.scoreTokens(engine.createSequence(), base);
    const b = await engine.scoreTokens(engine.createSequence(), changed);
    const W = oneLayer.slidingWindow!;
    expect(relativeError(a[W - 1], Float64Array.from(b[W - 1]))).toBeGreaterThan(1e-3); // position 3 still sees position 0
    expect(relativeError(a[W], Float64Array.from(b[W]))).toBeLessThan(1e-6); // position 4 does not
    await engine.dispose();
  });
});

function logSoftmaxAt(logits: Float32Array, index: number): number {
  let max = -Infinity;
  for (const value of logits) max = Math.max(max, value);
  let total = 0;
  for (const value of logits) total += Math.exp(value - max);
  return logits[index] - max - Math.log(total);
}
