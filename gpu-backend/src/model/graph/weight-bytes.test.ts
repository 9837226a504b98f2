// The weight-size rule against what a built graph really stores: the initializers of a model written
// with its weights in model.onnx.data, summed per format and block size.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { configFromHuggingFace } from '../checkpoint/config';
import { randomModelWeights } from '../checkpoint/default-model';
import { MapWeightSource, tinyConfig, MISTRAL_7B_V01_JSON } from '../reference/test-models';
import { ExternalDataWriter } from './graph-builder';
import { buildModelGraph } from './model-graph';
import { encodeOnnxModel } from './onnx-proto-writer';
import { weightBytes, weightBytesPerToken } from './weight-bytes';

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weight-bytes-test-'));
afterAll(() => fs.rmSync(workDir, { recursive: true, force: true }));

const MISTRAL_7B = configFromHuggingFace(MISTRAL_7B_V01_JSON);

/** Builds the graph with external data and returns the bytes its weight initializers hold, inline or in the file. */
async function storedWeightBytes(config: ReturnType<typeof tinyConfig>, format: 'fp32' | 'fp16' | 'int4', int4BlockSize?: number) {
  const folder = fs.mkdtempSync(path.join(workDir, 'model-'));
  const dataPath = path.join(folder, 'model.onnx.data');
  const writer = new ExternalDataWriter(dataPath, 'model.onnx.data');
  const source = new MapWeightSource(config, randomModelWeights(config, 5));
  let built;
  try {
    built = await buildModelGraph(source, { format, int4BlockSize }, writer);
  } finally {
    writer.close();
  }
  const modelPath = path.join(folder, 'model.onnx');
  fs.writeFileSync(modelPath, Buffer.concat(encodeOnnxModel(built.model)));
  let weights = 0;
  let fileEnd = 0;
  for (const tensor of built.model.graph.initializers) {
    const length = tensor.external ? tensor.external.length : tensor.data!.length;
    if (tensor.external) fileEnd = Math.max(fileEnd, tensor.external.offset + tensor.external.length);
    if (tensor.name.startsWith('model.') || tensor.name.startsWith('lm_head.')) weights += length;
  }
  // The initializers' external ranges are what the data file on disk holds.
  expect(fs.statSync(dataPath).size).toBe(fileEnd);
  expect(fs.statSync(modelPath).size + fileEnd).toBeGreaterThan(weights);
  return weights;
}

describe('weightBytes', () => {
  const config = tinyConfig({ vocabSize: 96, hiddenSize: 64, intermediateSize: 96, headDim: 16 });

  it.each([
    ['fp32', undefined],
    ['fp16', undefined],
    ['int4', 32],
    ['int4', 64], // K = 96 is not a multiple of 64: the padded block is stored too
    ['int4', 16],
  ] as const)('equals the bytes a built %s graph stores (block %s)', async (format, blockSize) => {
    expect(weightBytes(config, format, blockSize)).toBe(await storedWeightBytes(config, format, blockSize));
  });

  it('counts the LM head of a tied model as its own copy, as the graph stores it', async () => {
    const tied = { ...config, tieWordEmbeddings: true };
    expect(weightBytes(tied, 'int4')).toBe(await storedWeightBytes(tied, 'int4'));
    expect(weightBytes(tied, 'fp32')).toBe(weightBytes(config, 'fp32'));
  });

  it('puts Mistral 7B int4 projections and embedding at 0.5625 bytes per weight (default block 64; 0.625 at 32), norms in fp32', () => {
    const projections = 32 * (4096 * 6144 + 4096 * 4096 + 3 * 4096 * 14336) + 32000 * 4096;
    const embedding = 32000 * 4096;
    const norms = (2 * 32 + 1) * 4096 * 4;
    const embeddingAndNorms = embedding * 4 + norms;
    expect(weightBytesPerToken(MISTRAL_7B, 'int4')).toBe(projections * 0.5625);
    expect(weightBytes(MISTRAL_7B, 'int4')).toBe((projections + embedding) * 0.5625 + norms);
    expect(weightBytesPerToken(MISTRAL_7B, 'int4', 32)).toBe(projections * 0.625);
    expect(weightBytes(MISTRAL_7B, 'int4', 32)).toBe((projections + embedding) * 0.625 + norms);
    expect(weightBytesPerToken(MISTRAL_7B, 'int4', 128)).toBe(projections * (0.5 + 4 / 128));
    expect(weightBytesPerToken(MISTRAL_7B, 'fp16')).toBe(projections * 2);
    expect(weightBytes(MISTRAL_7B, 'fp16')).toBe((projections + embeddingAndNorms / 4) * 2);
  });
});
