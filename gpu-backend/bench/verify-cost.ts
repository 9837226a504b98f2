// `npm run bench:model -- --verify [--threads 2 --dtypes fp32,int4 --repeats 3]`: what a speculative
// verification step of 1 + k tokens costs against a plain decode step (k = 1..8, batch 1, 128 context)
// on the 125M bench shape and on Mistral 7B's layer shape with 2 of its 32 layers (same hidden size,
// heads, MLP and vocabulary: per-layer costs and the lm_head as in 7B; the whole-model ratio lies
// between this one and the per-layer one). With --peer, llama.cpp's C++ loop (bench:peer's) measures the
// same steps on a GGUF of the same weights, in alternating order. Prints figures; asserts nothing.

import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { onnxCacheDirFrom } from '../src/config';
import { BENCH_125M_CONFIG, DEFAULT_MODEL_CONFIG, ensureRandomModel } from '../src/model/checkpoint/default-model';
import { Engine } from '../src/model/runtime/engine';
import type { WeightFormat } from '../src/model/runtime/engine-types';
import { median } from '../../shared/stats';
import { ensureLlamaLoop, type LlamaLoop } from './peer/llama-loop-build';
import { ensureGguf, ensurePeerInstalled, GGUF_FORMAT, PEER_DIR } from './peer/peer-install';

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

/** llama.cpp's C++ loop (llama-loop.cc --verify) on the same checkpoint: median ms per k, one process per repeat. */
function peerMillis(loop: LlamaLoop, gguf: string, format: WeightFormat, threads: number): number[] {
  const args = ['--verify', String(MAX_DRAFT), '--decode-tokens', String(STEPS), '--threads', String(threads), '--batches', '1'];
  const stdout = execFileSync(loop.binary, [...args, '--format', format, '--gguf', gguf, '--backends', loop.backends], {
    env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`llama-loop --verify printed no RESULT line:\n${stdout}`);
  const result = JSON.parse(line.slice(7)) as Record<string, number>;
  return Array.from({ length: MAX_DRAFT + 1 }, (_, k) => result[`verifyMs${k}`]);
}

/** One printed row: decode ms, then per k the median ratio to decode and the min-max of the per-repeat ratios. */
function printRow(label: string, perK: number[][]): void {
  const decode = median(perK[0]);
  const cells = perK.slice(1).map((samples, i) => {
    const ratios = samples.map((ms, r) => ms / perK[0][r]);
    return `k=${i + 1} ${(median(samples) / decode).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`;
  });
  console.log(`${label}: decode ${decode.toFixed(1)} ms (${Math.min(...perK[0]).toFixed(1)}-${Math.max(...perK[0]).toFixed(1)}); ${cells.join(', ')}`);
}

/** With `peer`, each repeat also runs llama.cpp's C++ loop on a GGUF of the same weights (F32 / Q4_0), order alternating. */
export async function benchVerifyCost(threadCounts: number[], dtypes: WeightFormat[], repeats: number, peer: boolean): Promise<void> {
  const shapes = [
    ['125m', await ensureRandomModel(path.resolve('.models/bench-125m'), BENCH_125M_CONFIG, 125)],
    [
      '7b-2layer',
      await ensureRandomModel(path.join(os.homedir(), '.cache/mistral-edge-serve/bench-7b-2layer'), MISTRAL_7B_2_LAYER_CONFIG, 7, { dtype: 'BF16' }),
    ],
  ] as const;
  if (peer) ensurePeerInstalled();
  const loop = peer ? ensureLlamaLoop(PEER_DIR) : undefined;
  console.log(
    `verification step of 1 + k tokens / decode step, batch 1, ${CONTEXT} context, median of ${STEPS} steps x ${repeats} repeats (min, max of repeat medians)`,
  );
  for (const [shape, modelDir] of shapes) {
    for (const dtype of dtypes) {
      const gguf = loop ? await ensureGguf(modelDir, GGUF_FORMAT[dtype]) : undefined;
      for (const threads of threadCounts) {
        const ours: number[][] = Array.from({ length: MAX_DRAFT + 1 }, () => []);
        const theirs: number[][] = Array.from({ length: MAX_DRAFT + 1 }, () => []);
        const measureOurs = async () => {
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
          for (let k = 0; k <= MAX_DRAFT; k++) ours[k].push(median(await stepMillis(engine, k)));
          await engine.dispose();
        };
        const measureTheirs = () => peerMillis(loop!, gguf!, dtype, threads).forEach((ms, k) => theirs[k].push(ms));
        for (let r = 0; r < repeats; r++) {
          if (loop && r % 2 === 1) measureTheirs();
          await measureOurs();
          if (loop && r % 2 === 0) measureTheirs();
        }
        printRow(`${shape} ${dtype} ${threads}t`, ours);
        if (loop) printRow(`${shape} ${GGUF_FORMAT[dtype]} ${threads}t, llama.cpp C++ loop`, theirs);
      }
    }
  }
}
