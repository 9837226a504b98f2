// The trained stories260k checkpoints (head_dim 8: the unfused fallback) against the float64 reference:
// greedy generations token for token, prompts longer than the window, generations several windows long,
// through the host KV cache and (swa16) the device-resident one.

import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, type EngineLoadOptions } from './engine';
import { ReferenceModel } from '../reference/reference-forward';

const FIXTURES = process.env.FIXTURES_DIR ?? path.resolve(process.cwd(), '../shared/fixtures');
const PROMPT = [1, ...Array.from({ length: 40 }, (_, i) => ((i * 37 + 11) % 500) + 3)];

async function engineGreedy(engine: Engine, promptIds: number[], maxNewTokens: number): Promise<number[]> {
  const sequenceId = engine.createSequence();
  let [logits] = await engine.step([{ sequenceId, tokenIds: promptIds }]);
  const generated: number[] = [];
  for (;;) {
    let best = 0;
    for (let id = 1; id < logits.length; id++) if (logits[id] > logits[best]) best = id;
    generated.push(best);
    if (generated.length === maxNewTokens) return generated;
    [logits] = await engine.step([{ sequenceId, tokenIds: [best] }]);
  }
}

/** A fixture checkpoint on the CPU, one thread, two sequences, no graph cache; `options` adds the store's settings. */
const loadFixture = (folder: string, options: Partial<EngineLoadOptions>) =>
  Engine.load({
    modelDir: path.join(FIXTURES, folder),
    dtype: 'fp32',
    executionProvider: 'cpu',
    intraOpThreads: 1,
    maxSequences: 2,
    onnxCacheDir: null,
    ...options,
  });

describe('stories260k fixtures', () => {
  for (const [folder, chunkSize] of [
    ['stories260k', undefined],
    ['stories260k-swa16', 7],
    ['stories260k-swa32', undefined],
  ] as const) {
    it(`${folder}: 100 greedy tokens after a 41-token prompt match the reference (chunk ${chunkSize ?? 'default'})`, async () => {
      const reference = await ReferenceModel.load(path.join(FIXTURES, folder));
      const engine = await loadFixture(folder, { chunkSize });
      expect(engine.attention).toBe('unfused');
      const expected = reference.greedy(PROMPT, 100, { ignoreEos: true });
      expect(await engineGreedy(engine, PROMPT, 100)).toEqual(expected);
      if (engine.config.slidingWindow !== null) expect(engine.cacheCapacity).toBe(engine.config.slidingWindow - 1);
      await engine.dispose();
    });
  }

  it('stories260k-swa16 through the device-resident KV cache (the WebGPU store, on the CPU): 60 greedy tokens match the reference', async () => {
    const expected = (await ReferenceModel.load(path.join(FIXTURES, 'stories260k-swa16'))).greedy(PROMPT, 60, { ignoreEos: true });
    const engine = await loadFixture('stories260k-swa16', { chunkSize: 7, residentKvCache: true });
    try {
      expect(engine.kvCacheSummary()).toMatch(/device-resident/);
      expect(await engineGreedy(engine, PROMPT, 60)).toEqual(expected);
    } finally {
      await engine.dispose();
    }
  });
});
