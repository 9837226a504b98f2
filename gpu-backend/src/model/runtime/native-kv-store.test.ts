// The native session (--runtime native) against the JS session and the float64 reference: generated
// tiny models and the trained stories260k checkpoints, batched ragged decode past the sliding window,
// idle rows riding along in a batch, forks and row compaction, and its failure paths. Without the
// addon (not built here) each test checks the one-line error instead; with CI=true a missing addon fails.

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../checkpoint/config';
import { randomModelWeights } from '../checkpoint/default-model';
import { buildModelGraph } from '../graph/model-graph';
import { ReferenceModel } from '../reference/reference-forward';
import { MapWeightSource, maxRelativeError, tinyConfig } from '../reference/test-models';
import { Engine, type EngineLoadOptions } from './engine';
import { NATIVE_ADDON_PATH, NativeUnavailableError, loadNativeAddon } from './native-session';

const FIXTURES = process.env.FIXTURES_DIR ?? path.resolve(process.cwd(), '../shared/fixtures');
const BUILT = fs.existsSync(NATIVE_ADDON_PATH);

const engineOf = (config: ModelConfig, weights: Map<string, Float32Array>, options: Partial<EngineLoadOptions>) =>
  Engine.fromWeights(new MapWeightSource(config, weights), {
    modelDir: 'tiny',
    dtype: 'fp32',
    executionProvider: 'cpu',
    intraOpThreads: 1,
    maxSequences: 4,
    onnxCacheDir: null,
    chunkSize: 4,
    ...options,
  });

/** Runs `check` with a native engine, or (addon not built) checks that asking for one fails in one clear line. */
async function withNative(load: () => Promise<Engine>, check: (engine: Engine) => Promise<void>): Promise<void> {
  if (!BUILT) {
    await expect(load()).rejects.toThrow(NativeUnavailableError);
    return;
  }
  const engine = await load();
  try {
    await check(engine);
  } finally {
    await engine.dispose();
  }
}

const argmax = (row: Float32Array) => row.reduce((best, value, i) => (value > row[best] ? i : best), 0);

/**
 * Three sequences, prompts of 9, 6 and 5 tokens; the first and last decode together greedily for
 * `steps` steps while the middle one (a row inside the batch's row range) waits, then it decodes
 * alone. Returns every logits row per sequence and the token ids.
 */
async function batchedRun(engine: Engine, steps: number): Promise<{ rows: Float32Array[][]; tokenIds: number[][]; ids: number[] }> {
  const tokenIds = [9, 6, 5].map((length, salt) => Array.from({ length }, (_, i) => (i * 7 + 3 + salt * 13) % engine.config.vocabSize));
  const ids = tokenIds.map(() => engine.createSequence());
  const rows: Float32Array[][] = [[], [], []];
  const first = await engine.step(ids.map((sequenceId, i) => ({ sequenceId, tokenIds: tokenIds[i] })));
  first.forEach((row, i) => rows[i].push(row));
  for (let step = 0; step < steps; step++) {
    const active = step < steps - 2 ? [0, 2] : [1];
    const logits = await engine.step(active.map((i) => ({ sequenceId: ids[i], tokenIds: [argmax(rows[i][rows[i].length - 1])] })));
    active.forEach((i, k) => {
      tokenIds[i].push(argmax(rows[i][rows[i].length - 1]));
      rows[i].push(logits[k]);
    });
  }
  return { rows, tokenIds, ids };
}

describe('native session', () => {
  it('the addon is built and loads against the ONNX Runtime 1.29 API (CI=true requires it)', () => {
    if (process.env.CI === 'true') expect(BUILT, `${NATIVE_ADDON_PATH} missing: npm ci did not build it (npm run build:native says why)`).toBe(true);
    if (!BUILT) {
      expect(() => loadNativeAddon()).toThrow(/^the native session addon is not built .*--runtime js$/);
      return;
    }
    expect(loadNativeAddon().ortApiVersion).toBe(29);
  });

  const cases: [headDim: number, queryHeads: number, kvHeads: number, window: number | null][] = [
    [16, 4, 2, null],
    [16, 4, 1, 5],
    [32, 4, 2, 6],
  ];
  for (const [headDim, queryHeadCount, keyValueHeadCount, slidingWindow] of cases) {
    it(`headDim ${headDim}, ${queryHeadCount}/${keyValueHeadCount} heads, window ${slidingWindow}: batched decode equals the JS session and the reference`, async () => {
      const config = tinyConfig({ headDim, queryHeadCount, keyValueHeadCount, slidingWindow });
      const weights = randomModelWeights(config, 5);
      await withNative(
        () => engineOf(config, weights, { runtime: 'native' }),
        async (native) => {
          expect(native.attention).toBe('fused');
          const js = await engineOf(config, weights, { attention: 'fused' });
          const expected = await batchedRun(js, 10);
          await js.dispose();
          const actual = await batchedRun(native, 10);
          expect(actual.tokenIds).toEqual(expected.tokenIds);
          const reference = ReferenceModel.fromWeights(config, weights);
          actual.rows.forEach((rows, i) => {
            const full = reference.forward(actual.tokenIds[i]);
            const promptLength = full.length - rows.length + 1;
            rows.forEach((row, k) => {
              expect(maxRelativeError(row, expected.rows[i][k])).toBeLessThan(1e-5);
              expect(maxRelativeError(row, full[promptLength - 1 + k])).toBeLessThan(1e-4);
            });
          });
        },
      );
    });
  }

  for (const dtype of ['fp16', 'int4'] as const) {
    it(`${dtype} weights (${dtype === 'fp16' ? 'fp16 cache' : 'fp32 cache'}): batched decode equals the JS session's fused graph`, async () => {
      const config = tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow: 6, hiddenSize: 64, intermediateSize: 96 });
      const weights = randomModelWeights(config, 7);
      await withNative(
        () => engineOf(config, weights, { runtime: 'native', dtype }),
        async (native) => {
          const js = await engineOf(config, weights, { attention: 'fused', dtype });
          const expected = await batchedRun(js, 8);
          await js.dispose();
          const actual = await batchedRun(native, 8);
          expect(actual.tokenIds).toEqual(expected.tokenIds);
          actual.rows.forEach((rows, i) =>
            rows.forEach((row, k) => expect(maxRelativeError(row, expected.rows[i][k])).toBeLessThan(dtype === 'fp16' ? 2e-3 : 1e-5)),
          );
          expect(native.kvStats().bytesPerSlot).toBe(2 * 2 * 2 * 16 * (dtype === 'fp16' ? 2 : 4));
        },
      );
    });
  }

  it('int4 weights computing in fp16 (the CUDA graph: MatMulNBits, GatherBlockQuantized and the cache in fp16) decode like int4 in fp32', async () => {
    const config = tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow: 6, hiddenSize: 64, intermediateSize: 96 });
    const weights = randomModelWeights(config, 7);
    await withNative(
      () => engineOf(config, weights, { runtime: 'native', dtype: 'int4', computeType: 'float16', int4BlockSize: 32, int4AccuracyLevel: 0 }),
      async (native) => {
        const js = await engineOf(config, weights, { attention: 'fused', dtype: 'int4', int4BlockSize: 32, int4AccuracyLevel: 0 });
        const expected = await batchedRun(js, 8);
        await js.dispose();
        const actual = await batchedRun(native, 8);
        expect(actual.tokenIds).toEqual(expected.tokenIds);
        actual.rows.forEach((rows, i) => rows.forEach((row, k) => expect(maxRelativeError(row, expected.rows[i][k])).toBeLessThan(5e-3)));
        expect(native.kvStats().bytesPerSlot).toBe(2 * 2 * 2 * 16 * 2);
      },
    );
  });

  it('forks copy the cache rows and a release compacts them (window 5)', async () => {
    const config = tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow: 5 });
    const weights = randomModelWeights(config, 9);
    await withNative(
      () => engineOf(config, weights, { runtime: 'native' }),
      async (engine) => {
        const reference = ReferenceModel.fromWeights(config, weights);
        const prompts = [3, 11, 6].map((length, salt) => Array.from({ length }, (_, i) => (i * 5 + 1 + salt * 17) % 64));
        const ids = prompts.map(() => engine.createSequence());
        await engine.step(prompts.map((tokenIds, i) => ({ sequenceId: ids[i], tokenIds })));
        const fork = engine.forkSequence(ids[1]);
        engine.releaseSequence(ids[0]); // the top row moves into row 0
        const next = [9, 17, 33];
        const live = [fork, ids[1], ids[2]];
        const logits = await engine.step(live.map((sequenceId, i) => ({ sequenceId, tokenIds: [next[i]] })));
        const alone = [
          [...prompts[1], next[0]],
          [...prompts[1], next[1]],
          [...prompts[2], next[2]],
        ].map((t) => reference.forward(t));
        logits.forEach((row, i) => expect(maxRelativeError(row, alone[i][alone[i].length - 1])).toBeLessThan(1e-4));
        // Only ids, positions, lengths and the logits rows cross: no cache bytes.
        expect(engine.kvStats().lastStepTransferBytes).toBe(3 * 64 * 4 + 3 * (8 + 8 + 4) + 3 * 8 + 4);
      },
    );
  });

  it('the host cache is reserved, not written: it occupies memory where tokens are, and a freed row gives its pages back', async () => {
    // 32 KiB per slot (2 layers, K and V, 8 heads of 256 floats) x 4 rows x 8192 slots: a 1 GiB reservation.
    const config = tinyConfig({ headDim: 256, queryHeadCount: 8, keyValueHeadCount: 8, maxPositions: 8191 });
    const weights = randomModelWeights(config, 13);
    const bytesPerSlot = 2 * 2 * 8 * 256 * 4;
    // Each [row, head] run of slots may end in a partly written page: at most one page per head of each tensor.
    const slack = 4 * 8 * 4096;
    await withNative(
      () => engineOf(config, weights, { runtime: 'native', maxModelLen: 8191, chunkSize: 512 }),
      async (engine) => {
        expect(engine.kvStats().residentBytes).toBe(0);
        const held = engine.createSequence();
        const idle = engine.createSequence();
        const prompt = Array.from({ length: 2048 }, (_, i) => (i * 7 + 3) % 64);
        await engine.step([{ sequenceId: held, tokenIds: prompt }]);
        await engine.step([{ sequenceId: idle, tokenIds: [5, 6, 7] }]);
        const written = engine.kvStats().residentBytes!;
        expect(written).toBeGreaterThanOrEqual(2051 * bytesPerSlot);
        expect(written).toBeLessThanOrEqual(2051 * bytesPerSlot + 2 * slack);
        engine.releaseSequence(held); // the idle row moves down into row 0 over the held one's slots; row 1 is freed
        expect(engine.kvStats().residentBytes).toBeLessThanOrEqual(3 * bytesPerSlot + slack);
        const next = await engine.step([{ sequenceId: idle, tokenIds: [8] }]);
        expect(maxRelativeError(next[0], ReferenceModel.fromWeights(config, weights).forward([5, 6, 7, 8])[3])).toBeLessThan(1e-4);
        engine.releaseSequence(idle);
        expect(engine.kvStats().residentBytes).toBe(0);
      },
    );
  });

  it('fixed decode (the CUDA graph path, without capture on the cpu) equals unfixed decode, window by window, across forks, compaction and the last row', async () => {
    const config = tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow: 5 });
    const weights = randomModelWeights(config, 11);
    await withNative(
      () => engineOf(config, weights, { runtime: 'native', cudaGraphs: true, maxSequences: 5 }),
      async (fixed) => {
        const unfixed = await engineOf(config, weights, { runtime: 'native', maxSequences: 5 });
        // Batches of rows [0, 3) (bucket 4) and row 1 alone (bucket 2: row 0 rides along), as batchedRun steps them.
        const expected = await batchedRun(unfixed, 9);
        const actual = await batchedRun(fixed, 9);
        expect(actual.tokenIds).toEqual(expected.tokenIds);
        actual.rows.forEach((rows, i) => rows.forEach((row, k) => expect(maxRelativeError(row, expected.rows[i][k])).toBeLessThan(1e-5)));
        // A fork into row 3 and a release that moves it into row 0: a batch of 3 in bucket 4, then 4 in 4.
        const reference = ReferenceModel.fromWeights(config, weights);
        const live = actual.ids;
        const fork = fixed.forkSequence(live[1]);
        fixed.releaseSequence(live[0]);
        const order = [fork, live[1], live[2]];
        const next = [5, 17, 33];
        const logits = await fixed.step(order.map((sequenceId, i) => ({ sequenceId, tokenIds: [next[i]] })));
        const alone = [
          [...actual.tokenIds[1], next[0]],
          [...actual.tokenIds[1], next[1]],
          [...actual.tokenIds[2], next[2]],
        ].map((tokens) => reference.forward(tokens));
        logits.forEach((row, i) => expect(maxRelativeError(row, alone[i][alone[i].length - 1])).toBeLessThan(1e-4));
        // Bucket 4: ids, positions and logits rows as int64, lengths as int32, the total, 3 logits rows.
        expect(fixed.kvStats().lastStepTransferBytes).toBe(4 * (8 + 8 + 8 + 4) + 4 + 3 * 64 * 4);
        // Rows 2..4 (two new sequences above): bucket 4 would pass the last of the 5 rows, so the window is rows 1..4.
        const fresh = [
          [3, 9, 27],
          [4, 16],
        ];
        const added = fresh.map(() => fixed.createSequence());
        await fixed.step(added.map((sequenceId, i) => ({ sequenceId, tokenIds: fresh[i] })));
        const top = [order[2], ...added];
        const topLogits = await fixed.step(top.map((sequenceId) => ({ sequenceId, tokenIds: [7] })));
        expect(fixed.kvStats().lastStepTransferBytes).toBe(4 * (8 + 8 + 8 + 4) + 4 + 3 * 64 * 4);
        const topAlone = [
          [...actual.tokenIds[2], next[2], 7],
          [...fresh[0], 7],
          [...fresh[1], 7],
        ].map((tokens) => reference.forward(tokens));
        topLogits.forEach((row, i) => expect(maxRelativeError(row, topAlone[i][topAlone[i].length - 1])).toBeLessThan(1e-4));
        await unfixed.dispose();
      },
    );
  });

  for (const folder of ['stories260k', 'stories260k-swa16']) {
    it(`${folder}: greedy ids equal the reference and the JS session, alone (100 tokens) and two in one batch`, async () => {
      const modelDir = path.join(FIXTURES, folder);
      const load = (runtime: 'js' | 'native') =>
        Engine.load({ modelDir, dtype: 'fp32', executionProvider: 'cpu', runtime, intraOpThreads: 1, maxSequences: 2, onnxCacheDir: null });
      await withNative(
        () => load('native'),
        async (native) => {
          const reference = await ReferenceModel.load(modelDir);
          const prompts = [41, 23].map((length, salt) => [1, ...Array.from({ length: length - 1 }, (_, i) => ((i * 37 + 11 + salt * 101) % 500) + 3)]);
          const greedy = async (engine: Engine, tokens: number) => {
            const ids = prompts.map(() => engine.createSequence());
            let logits = await engine.step(prompts.map((tokenIds, i) => ({ sequenceId: ids[i], tokenIds })));
            const out: number[][] = [[], []];
            for (let step = 0; step < tokens; step++) {
              const batch = step < 40 ? [0, 1] : [0];
              batch.forEach((i, k) => out[i].push(argmax(logits[k])));
              if (step + 1 < tokens) logits = await engine.step(batch.map((i) => ({ sequenceId: ids[i], tokenIds: [out[i][out[i].length - 1]] })));
            }
            return out;
          };
          const nativeIds = await greedy(native, 100);
          expect(nativeIds[0]).toEqual(reference.greedy(prompts[0], 100, { ignoreEos: true }));
          expect(nativeIds[1]).toEqual(reference.greedy(prompts[1], 40, { ignoreEos: true }));
          const js = await load('js');
          expect(await greedy(js, 100)).toEqual(nativeIds);
          await js.dispose();
        },
      );
    });
  }

  it('cuda without its provider library fails in one clear line; webgpu and an fp16 cache under fp32 are refused', async () => {
    const config = tinyConfig();
    const weights = randomModelWeights(config, 1);
    await expect(engineOf(config, weights, { runtime: 'native', executionProvider: 'webgpu' })).rejects.toThrow(/cpu or cuda provider, not webgpu/);
    await expect(engineOf(config, weights, { runtime: 'native', kvCacheDtype: 'fp16' })).rejects.toThrow(/native session keeps the compute type/);
    await expect(engineOf(config, weights, { runtime: 'native', attention: 'hybrid' })).rejects.toThrow(/fused attention/);
    const cuda = engineOf(config, weights, { runtime: 'native', executionProvider: 'cuda' });
    await expect(cuda).rejects.toThrow(BUILT ? /^native session \(cuda\): the CUDA execution provider is unavailable: / : NativeUnavailableError);
  });

  it('the shared-buffer graph outputs present_key/value in place of new_key/value, and needs fused attention', async () => {
    const config = tinyConfig({ layerCount: 1 });
    const source = new MapWeightSource(config, randomModelWeights(config, 2));
    const { model } = await buildModelGraph(source, { format: 'fp32', attention: 'fused', cacheIo: 'shared-buffer' }, null);
    const outputs = model.graph.outputs.map((output) => output.name);
    expect(outputs).toEqual(['logits', 'present_key.0', 'present_value.0']);
    expect(model.graph.outputs[1].shape).toEqual(model.graph.inputs.find((input) => input.name === 'past_key.0')!.shape);
    await expect(buildModelGraph(source, { format: 'fp32', attention: 'hybrid', cacheIo: 'shared-buffer' }, null)).rejects.toThrow(/fused attention/);
  });
});
