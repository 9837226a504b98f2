// Verification items (speculative decoding): 1 + k tokens in the batched decode run, every logits row
// returned, rejected drafts rolled back. Exactness against the float64 reference: the trained
// stories260k windows (16, 32) across several window boundaries, and random hybrid configs batched.

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { randomModelWeights } from '../checkpoint/default-model';
import { ReferenceModel } from '../reference/reference-forward';
import { MapWeightSource, maxRelativeError, tinyConfig } from '../reference/test-models';
import { Engine } from './engine';
import type { SessionRuntime } from './engine-types';
import { NATIVE_ADDON_PATH, NativeUnavailableError } from './native-session';

const FIXTURES = process.env.FIXTURES_DIR ?? path.resolve(process.cwd(), '../shared/fixtures');
const PROMPT = [1, ...Array.from({ length: 40 }, (_, i) => ((i * 37 + 11) % 500) + 3)];
const K_MAX = 4;
/** The native session verifies each item in a run of its own (no ring: a rollback is a shorter length). */
const RUNTIMES: SessionRuntime[] = ['js', 'native'];
const NATIVE_BUILT = fs.existsSync(NATIVE_ADDON_PATH);

/** The engine, or (native addon not built) null after checking that asking for it fails in one clear line. */
async function engineOrMissingAddon(runtime: SessionRuntime, load: () => Promise<Engine>): Promise<Engine | null> {
  if (runtime === 'native' && !NATIVE_BUILT) {
    await expect(load()).rejects.toThrow(NativeUnavailableError);
    return null;
  }
  return load();
}

function argmaxOf(logits: Float32Array, from = 0, vocabSize = logits.length): number {
  let best = 0;
  for (let id = 1; id < vocabSize; id++) if (logits[from + id] > logits[from + best]) best = id;
  return best;
}

/**
 * Greedy decoding where every step verifies a draft of 1..K_MAX tokens taken from `expected` with one
 * token corrupted at a step-dependent place (or none): full, partial and zero acceptance all occur.
 */
async function speculativeGreedy(engine: Engine, expected: number[]): Promise<{ generated: number[]; acceptedCounts: number[] }> {
  const { vocabSize } = engine.config;
  const sequenceId = engine.createSequence();
  const [first] = await engine.step([{ sequenceId, tokenIds: PROMPT }]);
  const generated = [argmaxOf(first)];
  const acceptedCounts: number[] = [];
  for (let step = 0; generated.length < expected.length; step++) {
    const k = Math.min(1 + (step % K_MAX), expected.length - generated.length - 1);
    const draft = expected.slice(generated.length, generated.length + k);
    const corruptAt = step % (K_MAX + 1);
    if (corruptAt < draft.length) draft[corruptAt] = (draft[corruptAt] + 1) % vocabSize;
    const length = engine.sequenceLength(sequenceId);
    const [rows] = await engine.step([{ sequenceId, tokenIds: [generated[generated.length - 1], ...draft], verify: draft.length > 0 }]);
    expect(rows.length).toBe((draft.length > 0 ? 1 + draft.length : 1) * vocabSize);
    let accepted = 0;
    for (let i = 0; i <= draft.length; i++) {
      const next = argmaxOf(rows, i * vocabSize, vocabSize);
      generated.push(next);
      if (i === draft.length || next !== draft[i]) break;
      accepted++;
    }
    engine.truncateSequence(sequenceId, length + 1 + accepted);
    acceptedCounts.push(accepted);
  }
  return { generated, acceptedCounts };
}

describe('speculative verification (stories260k fixtures vs the float64 reference)', () => {
  for (const [folder, runtime] of [
    ['stories260k-swa16', 'js'],
    ['stories260k-swa32', 'js'],
    ['stories260k-swa16', 'native'],
  ] as const) {
    it(`${folder}, ${runtime} session: 100 greedy tokens verified 1..${K_MAX} drafts at a time, rejections rolled back, equal the reference`, async () => {
      const modelDir = path.join(FIXTURES, folder);
      const reference = await ReferenceModel.load(modelDir);
      const load = () =>
        Engine.load({
          modelDir,
          dtype: 'fp32',
          executionProvider: 'cpu',
          runtime,
          intraOpThreads: 1,
          maxSequences: 1,
          onnxCacheDir: null,
          speculativeTokens: K_MAX,
        });
      const engine = await engineOrMissingAddon(runtime, load);
      if (!engine) return;
      try {
        const expected = reference.greedy(PROMPT, 100, { ignoreEos: true });
        const { generated, acceptedCounts } = await speculativeGreedy(engine, expected);
        expect(generated).toEqual(expected);
        // Every kind of outcome happened, and the generation crossed the window several times.
        expect(acceptedCounts).toContain(0);
        expect(acceptedCounts).toContain(K_MAX);
        expect(acceptedCounts.some((count) => count > 0 && count < K_MAX)).toBe(true);
        expect(PROMPT.length + 100).toBeGreaterThan(3 * engine.config.slidingWindow!);
        // The ring keeps k_max slots past the window; the native cache keeps every position.
        if (runtime === 'js') expect(engine.cacheCapacity).toBe(engine.config.slidingWindow! - 1 + K_MAX);
      } finally {
        await engine.dispose();
      }
    });
  }
});

describe('speculative verification (random configs)', () => {
  for (const runtime of RUNTIMES)
    for (const [headDim, slidingWindow] of [
      [16, 5],
      [8, 6],
      [16, null],
    ] as const) {
      it(`${runtime} session, headDim ${headDim}, window ${slidingWindow}: a verification in a step beside a plain decode matches the reference row by row`, async () => {
        const config = tinyConfig({ headDim, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow, hiddenSize: 32 });
        const weights = randomModelWeights(config, 5);
        const reference = ReferenceModel.fromWeights(config, weights);
        const load = () =>
          Engine.fromWeights(new MapWeightSource(config, weights), {
            modelDir: 'tiny',
            dtype: 'fp32',
            executionProvider: 'cpu',
            runtime,
            intraOpThreads: 1,
            maxSequences: 2,
            onnxCacheDir: null,
            speculativeTokens: 3,
          });
        const engine = await engineOrMissingAddon(runtime, load);
        if (!engine) return;
        try {
          const tokensA = Array.from({ length: 30 }, (_, i) => (i * 7 + 3) % config.vocabSize);
          const tokensB = Array.from({ length: 30 }, (_, i) => (i * 5 + 1) % config.vocabSize);
          const a = engine.createSequence();
          const b = engine.createSequence();
          await engine.step([{ sequenceId: a, tokenIds: tokensA.slice(0, 9) }]);
          await engine.step([{ sequenceId: b, tokenIds: tokensB.slice(0, 7) }]);
          let error = 0;
          // Each round: A verifies 1 + 3 and keeps a varying number; B decodes one token in the same run.
          for (let round = 0, lengthA = 9, lengthB = 7; lengthA + 4 <= tokensA.length; round++) {
            const [rowsA, rowB] = await engine.step([
              { sequenceId: a, tokenIds: tokensA.slice(lengthA, lengthA + 4), verify: true },
              { sequenceId: b, tokenIds: [tokensB[lengthB]] },
            ]);
            const expectedA = reference.forward(tokensA.slice(0, lengthA + 4));
            for (let i = 0; i < 4; i++)
              error = Math.max(error, maxRelativeError(rowsA.subarray(i * config.vocabSize, (i + 1) * config.vocabSize), expectedA[lengthA + i]));
            error = Math.max(error, maxRelativeError(rowB, reference.forward(tokensB.slice(0, lengthB + 1))[lengthB]));
            lengthB++;
            lengthA += 1 + (round % 4); // keep 1..4 of the 4 (rolls back 3..0)
            engine.truncateSequence(a, lengthA);
          }
          expect(error).toBeLessThan(1e-4);
          // A ring keeps exactly k_max positions to roll back; without a window any prefix stays.
          if (slidingWindow === null || runtime === 'native') expect(() => engine.truncateSequence(a, 0)).not.toThrow();
          else expect(() => engine.truncateSequence(a, 0)).toThrow(/draft slots/);
        } finally {
          await engine.dispose();
        }
      });
    }

  it('refuses verification items longer than 1 + speculativeTokens, and speculation with fused attention', async () => {
    const config = tinyConfig({ headDim: 16, queryHeadCount: 4, keyValueHeadCount: 2, slidingWindow: 5, hiddenSize: 32 });
    const source = new MapWeightSource(config, randomModelWeights(config, 5));
    const options = { modelDir: 'tiny', dtype: 'fp32', executionProvider: 'cpu', intraOpThreads: 1, maxSequences: 1, onnxCacheDir: null } as const;
    const engine = await Engine.fromWeights(source, { ...options, speculativeTokens: 2 });
    try {
      const id = engine.createSequence();
      await engine.step([{ sequenceId: id, tokenIds: [1, 2, 3] }]);
      await expect(engine.step([{ sequenceId: id, tokenIds: [4, 5, 6, 7], verify: true }])).rejects.toThrow(/exceeds 1 \+ speculativeTokens/);
    } finally {
      await engine.dispose();
    }
    await expect(Engine.fromWeights(source, { ...options, speculativeTokens: 2, attention: 'fused' })).rejects.toThrow(/not fused attention/);
  });
});
