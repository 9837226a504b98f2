// Correctness part of the device check: the same generated model run by the CPU engine and by the
// engine on the provider under test; every logits row of a chunked prefill over the window and of
// batched decode steps is compared (max |ep - cpu| / max |cpu| per row, the worst row reported).

import { randomModelWeights } from '../src/model/checkpoint/default-model';
import { Engine } from '../src/model/runtime/engine';
import { argmax } from '../src/server/logits-processors';
import type { WeightFormat } from '../src/model/runtime/engine-types';
import type { DeviceTarget } from './check-speed';
import { MapWeightSource, maxRelativeError as rowError, tinyConfig } from '../src/model/reference/test-models';

export interface CorrectnessResult {
  dtype: WeightFormat;
  maxRelativeError: number;
  rows: number;
  target: number;
  pass: boolean;
  /** Greedy ids of the provider's engine equal the CPU engine's. */
  sameGreedyIds: boolean;
}

export const CORRECTNESS_TARGETS: Record<WeightFormat, number> = { fp32: 1e-3, fp16: 1e-2, int4: 1e-2 };

/**
 * Window 24 (ring of 23 slots), chunk 16: a 40-token prompt wraps the ring inside prefill; three
 * sequences of different lengths then decode together for `decodeSteps` steps, fed the CPU's greedy ids.
 */
export async function checkCorrectness(
  { executionProvider, runtime, cudaGraphs }: DeviceTarget,
  dtype: WeightFormat,
  decodeSteps = 6,
): Promise<CorrectnessResult> {
  const config = tinyConfig({
    vocabSize: 512,
    hiddenSize: 128,
    intermediateSize: 256,
    layerCount: 2,
    queryHeadCount: 4,
    keyValueHeadCount: 2,
    headDim: 32,
    slidingWindow: 24,
  });
  const source = new MapWeightSource(config, randomModelWeights(config, 606));
  // int4AccuracyLevel 0: both engines compute MatMulNBits in float (4 quantizes the CPU's activations to int8).
  const options = { modelDir: 'device-check', dtype, intraOpThreads: 1, maxSequences: 4, chunkSize: 16, onnxCacheDir: null, int4AccuracyLevel: 0 };
  const reference = await Engine.fromWeights(source, { ...options, executionProvider: 'cpu' });
  // Three sequences decode in bucket 4: with CUDA graphs the first steps capture it and the rest replay it.
  const tested = await Engine.fromWeights(source, { ...options, executionProvider, runtime, cudaGraphs });
  try {
    const prompts = [
      Array.from({ length: 40 }, (_, i) => (i * 37 + 5) % config.vocabSize),
      Array.from({ length: 7 }, (_, i) => (i * 11 + 3) % config.vocabSize),
      [1],
    ];
    const referenceIds = prompts.map(() => reference.createSequence());
    const testedIds = prompts.map(() => tested.createSequence());
    let worst = 0;
    let rows = 0;
    let sameGreedyIds = true;
    let next: number[] = [];
    for (let p = 0; p < prompts.length; p++) {
      const [expected] = await reference.step([{ sequenceId: referenceIds[p], tokenIds: prompts[p] }]);
      const [actual] = await tested.step([{ sequenceId: testedIds[p], tokenIds: prompts[p] }]);
      worst = Math.max(worst, rowError(actual, expected));
      rows++;
      sameGreedyIds &&= argmax(actual) === argmax(expected);
      next.push(argmax(expected));
    }
    for (let step = 0; step < decodeSteps; step++) {
      const expected = await reference.step(referenceIds.map((sequenceId, p) => ({ sequenceId, tokenIds: [next[p]] })));
      const actual = await tested.step(testedIds.map((sequenceId, p) => ({ sequenceId, tokenIds: [next[p]] })));
      expected.forEach((row, p) => {
        worst = Math.max(worst, rowError(actual[p], row));
        sameGreedyIds &&= argmax(actual[p]) === argmax(row);
        rows++;
      });
      next = expected.map(argmax);
    }
    const target = CORRECTNESS_TARGETS[dtype];
    return { dtype, maxRelativeError: worst, rows, target, pass: worst < target, sameGreedyIds };
  } finally {
    await reference.dispose();
    await tested.dispose();
  }
}
