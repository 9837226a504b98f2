// The ONNX cache: built once, loaded on restart; weights in model.onnx.data when over the threshold.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../runtime/engine';
import { prepareOnnxModel } from './onnx-model-store';
import { ReferenceModel } from '../reference/reference-forward';
import { randomModelWeights as randomWeights } from '../checkpoint/default-model';
import { MapWeightSource, tinyConfig } from '../reference/test-models';

const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnx-cache-test-'));
afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

describe('prepareOnnxModel', () => {
  const config = tinyConfig({ headDim: 16, slidingWindow: 6 });
  const weights = randomWeights(config, 21);
  const source = new MapWeightSource(config, weights);

  it('writes external data, reuses the cached graph, and the session runs from it', async () => {
    const options = { format: 'fp32' as const, cacheDir, checkpointDir: path.join(cacheDir, 'no-such-checkpoint'), externalDataThresholdBytes: 0 };
    const first = await prepareOnnxModel(source, options);
    expect(first.fromCache).toBe(false);
    const modelPath = first.model as string;
    const dataPath = path.join(path.dirname(modelPath), 'model.onnx.data');
    const weightBytes = [...weights.values()].reduce((sum, w) => sum + w.byteLength, 0);
    expect(fs.statSync(dataPath).size).toBeGreaterThan(weightBytes * 0.9);
    expect(fs.statSync(modelPath).size).toBeLessThan(weightBytes / 4);
    expect((await prepareOnnxModel(source, options)).fromCache).toBe(true);
    expect((await prepareOnnxModel(source, { ...options, format: 'int4' })).fromCache).toBe(false);
    // A changed checkpoint rebuilds and replaces its predecessor of the same format; int4 stays.
    fs.mkdirSync(options.checkpointDir);
    fs.writeFileSync(path.join(options.checkpointDir, 'config.json'), '{}');
    const rebuilt = await prepareOnnxModel(source, options);
    expect(rebuilt.fromCache).toBe(false);
    expect(fs.existsSync(modelPath)).toBe(false);
    expect(fs.readdirSync(cacheDir).filter((entry) => entry.startsWith('no-such-checkpoint-')).length).toBe(2);

    fs.rmSync(options.checkpointDir, { recursive: true });
    const engine = await Engine.fromWeights(source, {
      modelDir: options.checkpointDir,
      dtype: 'fp32',
      executionProvider: 'cpu',
      intraOpThreads: 1,
      maxSequences: 1,
      onnxCacheDir: cacheDir,
      externalDataThresholdBytes: 0,
    });
    const tokenIds = [1, 5, 9, 13, 17, 21, 25, 29];
    const [logits] = await engine.step([{ sequenceId: engine.createSequence(), tokenIds }]);
    const expected = ReferenceModel.fromWeights(config, weights).forward(tokenIds)[7];
    let maxDiff = 0;
    for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(logits[i] - expected[i]));
    expect(maxDiff).toBeLessThan(1e-4);
    await engine.dispose();
  });

  it('caches the resident-KV variant under its own key: built once, reloaded, never mistaken for the plain graph', async () => {
    const options = { format: 'fp32' as const, cacheDir, checkpointDir: path.join(cacheDir, 'variants'), externalDataThresholdBytes: 0 };
    const resident = await prepareOnnxModel(source, { ...options, cacheIo: 'resident' });
    expect(resident.fromCache).toBe(false);
    expect(path.basename(path.dirname(resident.model as string))).toMatch(/^variants-resident-kv-fp32-/);
    const again = await prepareOnnxModel(source, { ...options, cacheIo: 'resident' });
    expect(again).toEqual({ ...resident, fromCache: true });
    const plain = await prepareOnnxModel(source, options);
    expect(plain.fromCache).toBe(false);
    expect(plain.model).not.toBe(resident.model);
    expect(fs.existsSync(resident.model as string)).toBe(true);
    // 'new-rows' is the plain graph: named or left out, the same key.
    expect(await prepareOnnxModel(source, { ...options, cacheIo: 'new-rows' })).toEqual({ ...plain, fromCache: true });
  });
});
