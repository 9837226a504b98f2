// `npm run bench:model -- --verify [--threads 2 --dtypes fp32,int4 --repeats 3]`: what a speculative
// verification step of 1 + k tokens costs against a plain decode step (k = 1..8, batch 1, 128 context)
// on the 125M bench shape and on Mistral 7B's layer shape with 2 of its 32 layers (same hidden size,
// heads, MLP and vocabulary: per-layer costs and the lm_head as in 7B; the whole-model ratio lies
// between this one and the per-layer one). Prints figures; asserts nothing.

import os from 'node:os';
import path from 'node:path';
import { onnxCacheDirFrom } from '../src/config';
import { BENCH_125M_CONFIG, DEFAULT_MODEL_CONFIG, ensureRandomModel } from '../src/model/checkpoint/default-model';
import { Engine } from '../src/model/runtime/engine';
import type { WeightFormat } from '../src/model/runtime/engine-types';
import { median } from '../../shared/stats';

const MAX_DRAFT = 8;
const CONTEXT = 128;
const STEPS = 8;

/** Mistral 7B's layer shape (v0.1 window) with 2 layers: 7B's per-token weight bytes per layer and its lm_head. */
const MISTRAL_7B_2_LAYER_CONFIG = {
  ...DEFAULT_MODEL_CONFIG,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 2,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 128,
  sliding_window: 4096,
  max_position_embeddings: 32768,
};

/** Milliseconds per step of 1 + k tokens (k = 0: a plain decode), over STEPS, every draft rejected (rolled back) after each. */
async function stepMillis(engine: Engine, k: number): Promise<number[]> {
  const sequenceId = engine.createSequence();
  await engine.step([{ sequenceId, tokenIds: Array.from({ length: CONTEXT }, (_, i) => 3 + ((i * 7919) % 31000)) }]);
  const samples: number[] = [];
  for (let i = 0; i < STEPS + 1; i++) {
    const tokenIds = Array.from({ length: 1 + k }, (_, t) => 3 + ((i * 31 + t * 17) % 31000));
    const length = engine.sequenceLength(sequenceId);
    const started = performance.now();
    await engine.step([{ sequenceId, tokenIds, verify: k > 0 }]);
    if (i > 0) samples.push(performance.now() - started); // the first is a warm-up
    engine.truncateSequence(sequenceId, length + 1);
  }
  engine.releaseSequence(sequenceId);
  return samples;
}

export async function benchVerifyCost(threadCounts: number[], dtypes: WeightFormat[], repeats: number): Promise<void> {
  const shapes = [
    ['125m', await ensureRandomModel(path.resolve('.models/bench-125m'), BENCH_125M_CONFIG, 125)],
    [
      '7b-2layer',
      await ensureRandomModel(path.join(os.homedir(), '.cache/mistral-edge-serve/bench-7b-2layer'), MISTRAL_7B_2_LAYER_CONFIG, 7, { dtype: 'BF16' }),
    ],
  ] as const;
  console.log(
    `verification step of 1 + k tokens / decode step, batch 1, ${CONTEXT} context, median of ${STEPS} steps x ${repeats} repeats (min, max of repeat medians)`,
  );
  for (const [shape, modelDir] of shapes) {
    for (const dtype of dtypes) {
      for (const threads of threadCounts) {
        const perK: number[][] = Array.from({ length: MAX_DRAFT + 1 }, () => []);
        for (let r = 0; r < repeats; r++) {
          const engine = await Engine.load({
            modelDir,
            dtype,
            executionProvider: 'cpu',
            intraOpThreads: threads,
            maxSequences: 1,
            maxModelLen: 1024,
            onnxCacheDir: onnxCacheDirFrom(process.env),
            speculativeTokens: MAX_DRAFT,
          });
          // Interleaved so machine noise hits every k alike.
          for (let k = 0; k <= MAX_DRAFT; k++) perK[k].push(median(await stepMillis(engine, k)));
          await engine.dispose();
        }
        const decode = median(perK[0]);
        const cells = perK.slice(1).map((samples, i) => {
          const ratios = samples.map((ms, r) => ms / perK[0][r]);
          return `k=${i + 1} ${(median(samples) / decode).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`;
        });
        console.log(
          `${shape} ${dtype} ${threads}t: decode ${decode.toFixed(1)} ms (${Math.min(...perK[0]).toFixed(1)}-${Math.max(...perK[0]).toFixed(1)}); ${cells.join(', ')}`,
        );
      }
    }
  }
}
