// `npm run bench:int4 [-- --block-sizes 32,64,128 --accuracy-levels 4 --rounds 3]`: the int4 variants
// MatMulNBits offers on the ~125M bench model: error of the logits against the fp32 engine (same prompt,
// then fp32's greedy ids fed to both), greedy agreement, decode @128 and prefill 128 speed, interleaved
// rounds, one engine loaded at a time. Prints figures; asserts nothing.

import path from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_125M_CONFIG, ensureRandomModel } from '../src/model/checkpoint/default-model';
import { Engine, type EngineLoadOptions } from '../src/model/runtime/engine';
import { onnxCacheDirFrom } from '../src/config';
import { midpointMedian } from '../../shared/stats';

const USAGE = `usage: npm run bench:int4 -- [--block-sizes 32,64,128] [--accuracy-levels 4] [--rounds 3] [--threads 2] [--decode-tokens 16] [--model-dir .models/bench-125m]`;
const { values } = parseArgs({
  options: {
    'block-sizes': { type: 'string', default: '32,64,128' },
    'accuracy-levels': { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    'decode-tokens': { type: 'string', default: '16' },
    'model-dir': { type: 'string', default: '.models/bench-125m' },
    help: { type: 'boolean', default: false },
  },
});

const promptOf = (length: number) => Array.from({ length }, (_, i) => 3 + ((i * 7919) % 31000));
const argmax = (row: Float32Array) => row.reduce((best, v, i) => (v > row[best] ? i : best), 0);
/** max |a - b| / max |b|: the worst logit error relative to the reference's range. */
const relativeError = (a: Float32Array, b: Float32Array) => {
  let error = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    error = Math.max(error, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return error / scale;
};

/** Logits after the 128-token prompt and after each of `ids` (the reference's greedy continuation), plus timings. */
async function run(options: EngineLoadOptions, ids: number[] | null, decodeTokens: number) {
  const engine = await Engine.load(options);
  const sequenceId = engine.createSequence();
  const prefillStart = performance.now();
  const rows = [(await engine.step([{ sequenceId, tokenIds: promptOf(128) }]))[0]];
  const prefill = 128 / ((performance.now() - prefillStart) / 1000);
  const fed: number[] = [];
  const decodeStart = performance.now();
  for (let i = 0; i < decodeTokens; i++) {
    const next = ids ? ids[i] : argmax(rows.at(-1)!);
    fed.push(next);
    rows.push((await engine.step([{ sequenceId, tokenIds: [next] }]))[0]);
  }
  const decode = decodeTokens / ((performance.now() - decodeStart) / 1000);
  await engine.dispose();
  return { rows, fed, prefill, decode };
}

async function main(): Promise<void> {
  if (values.help) return console.log(USAGE);
  const modelDir = await ensureRandomModel(path.resolve(values['model-dir']), BENCH_125M_CONFIG, 125);
  const decodeTokens = Number(values['decode-tokens']);
  const base = {
    modelDir,
    executionProvider: 'cpu',
    intraOpThreads: Number(values.threads),
    maxSequences: 1,
    maxModelLen: 256,
    onnxCacheDir: onnxCacheDirFrom(process.env),
  } as const;
  const reference = await run({ ...base, dtype: 'fp32' }, null, decodeTokens);
  const variants = values['block-sizes']
    .split(',')
    .flatMap((b) => values['accuracy-levels'].split(',').map((a) => ({ int4BlockSize: Number(b), int4AccuracyLevel: Number(a) })));
  const figures = new Map<string, { error: number[]; agree: number; prefill: number[]; decode: number[] }>();
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
      const key = `block ${variant.int4BlockSize}, accuracy_level ${variant.int4AccuracyLevel}`;
      const result = await run({ ...base, dtype: 'int4', ...variant }, reference.fed, decodeTokens);
      const entry = figures.get(key) ?? { error: result.rows.map((row, i) => relativeError(row, reference.rows[i])), agree: 0, prefill: [], decode: [] };
      entry.agree = result.rows.filter((row, i) => argmax(row) === argmax(reference.rows[i])).length;
      entry.prefill.push(result.prefill);
      entry.decode.push(result.decode);
      figures.set(key, entry);
    }
  }
  console.log(`fp32 reference: prefill 128 ${reference.prefill.toFixed(0)} tok/s, decode @128 ${reference.decode.toFixed(1)} tok/s (one run)`);
  for (const [key, f] of figures) {
    console.log(
      `${key.padEnd(30)} logit error vs fp32 (max/|max logit|): median ${midpointMedian(f.error).toFixed(4)}, max ${Math.max(...f.error).toFixed(4)}; ` +
        `argmax agrees ${f.agree}/${f.error.length}; prefill 128 ${midpointMedian(f.prefill).toFixed(0)} tok/s; decode @128 ${midpointMedian(f.decode).toFixed(1)} tok/s (min ${Math.min(...f.decode).toFixed(1)}, max ${Math.max(...f.decode).toFixed(1)})`,
    );
  }
}

await main();
