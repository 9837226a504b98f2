// `npm run bench:model [-- --threads 1,2 --dtypes fp32,int4 --kv-cache-dtypes auto,fp16 --runtimes js,native --repeats 3]`: prefill and decode speed of the
// engine on the ~125M Mistral-shaped random model, against the memory-bandwidth floor measured in the
// same run. Prints figures and ratios; it asserts nothing.

import path from 'node:path';
import { parseArgs } from 'node:util';
import { configFromHuggingFace } from '../src/model/checkpoint/config';
import { BENCH_125M_CONFIG, ensureRandomModel } from '../src/model/checkpoint/default-model';
import { Engine } from '../src/model/runtime/engine';
import { type KvCacheDtype, type SessionRuntime, type WeightFormat, computeTypeOf, kvCacheElementType } from '../src/model/runtime/engine-types';
import { weightBytesPerToken } from '../src/model/graph/weight-bytes';
import { measureReadBandwidth } from './read-bandwidth';
import { benchVerifyCost } from './verify-cost';
import { onnxCacheDirFrom } from '../src/config';
import { median, spread, type Spread } from '../../shared/stats';

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h' },
    threads: { type: 'string', default: '1,2' },
    dtypes: { type: 'string', default: 'fp32,int4' },
    repeats: { type: 'string', default: '3' },
    'decode-tokens': { type: 'string', default: '16' },
    'model-dir': { type: 'string', default: '.models/bench-125m' },
    'kv-cache-dtypes': { type: 'string', default: 'auto' },
    runtimes: { type: 'string', default: 'js' },
    verify: { type: 'boolean', default: false },
    peer: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(`Usage: npm run bench:model [-- --threads 1,2] [--dtypes fp32,int4] [--kv-cache-dtypes auto,fp16] [--repeats 3]
                            [--decode-tokens 16] [--model-dir .models/bench-125m] [--runtimes js,native] [--verify [--peer]]
--verify: only the cost of a speculative verification step of 1 + k tokens against a decode step (verify-cost.ts);
          --peer adds llama.cpp's C++ loop on the same weights (installed on demand, as bench:peer does).
Prefill and decode tokens/s of the engine on a ~125M Mistral-shaped random model (generated on first use),
against the memory-bandwidth floor measured in the same run. Prints figures; asserts nothing.`);
  process.exit(0);
}
const threadCounts = values.threads.split(',').map(Number);
const dtypes = values.dtypes.split(',') as WeightFormat[];
const repeats = Number(values.repeats);
const decodeTokens = Number(values['decode-tokens']);
const kvCacheDtypes = values['kv-cache-dtypes'].split(',') as KvCacheDtype[];
const runtimes = values.runtimes.split(',') as SessionRuntime[];
/** The native session allocates its cache at full length up front: long enough for decode @2000, no longer. */
const NATIVE_MAX_MODEL_LEN = 2112;

type Samples = Record<'p128' | 'p1024' | 'd128' | 'd2000' | 'b8', number[]>;

const show = (s: Spread, unit: string) => `${s.median.toFixed(1)} ${unit} (min ${s.min.toFixed(1)}, max ${s.max.toFixed(1)})`;

const promptOf = (length: number) => Array.from({ length }, (_, i) => 3 + ((i * 7919) % 31000));

async function timePrefill(engine: Engine, length: number): Promise<number> {
  const sequenceId = engine.createSequence();
  const start = performance.now();
  await engine.step([{ sequenceId, tokenIds: promptOf(length) }]);
  const seconds = (performance.now() - start) / 1000;
  engine.releaseSequence(sequenceId);
  return length / seconds;
}

/**
 * Decode tokens/s at batch 1 after `context` tokens (one untimed step first). Each measurement runs with
 * its engine the only one loaded: a second engine in the process, idle or alternating, slowed 2-thread
 * decode markedly (their ONNX Runtime thread pools compete for the same cores; docs/bench/model-engine.md).
 */
async function timeDecode(engine: Engine, context: number): Promise<number> {
  const sequenceId = engine.createSequence();
  await engine.step([{ sequenceId, tokenIds: promptOf(context) }]);
  await engine.step([{ sequenceId, tokenIds: [5] }]);
  const start = performance.now();
  for (let i = 0; i < decodeTokens; i++) await engine.step([{ sequenceId, tokenIds: [(i * 31) % 32000] }]);
  const seconds = (performance.now() - start) / 1000;
  engine.releaseSequence(sequenceId);
  return decodeTokens / seconds;
}

/** Aggregate decode tokens/s of `batch` sequences of 128-token context stepping together. */
async function timeBatchDecode(engine: Engine, batch: number): Promise<number> {
  const sequenceIds = Array.from({ length: batch }, () => engine.createSequence());
  for (const sequenceId of sequenceIds) await engine.step([{ sequenceId, tokenIds: promptOf(128) }]);
  await engine.step(sequenceIds.map((sequenceId) => ({ sequenceId, tokenIds: [5] })));
  const start = performance.now();
  for (let i = 0; i < decodeTokens; i++) await engine.step(sequenceIds.map((sequenceId, k) => ({ sequenceId, tokenIds: [(i * 31 + k) % 32000] })));
  const seconds = (performance.now() - start) / 1000;
  for (const sequenceId of sequenceIds) engine.releaseSequence(sequenceId);
  return (batch * decodeTokens) / seconds;
}

async function main(): Promise<void> {
  const modelDir = await ensureRandomModel(path.resolve(values['model-dir']), BENCH_125M_CONFIG, 125);
  const measured = await measureReadBandwidth(Math.max(...threadCounts));
  const bandwidthFor = (threads: number) =>
    Math.max(measured.jsSum, measured.memcmp, threads > 1 && threads === Math.max(...threadCounts) ? measured.parallelMemcmp : 0);
  console.log(`model ${modelDir}`);
  const gb = (bytesPerSecond: number) => `${(bytesPerSecond / 1e9).toFixed(2)} GB/s`;
  console.log(
    `read bandwidth: Float32Array sum ${gb(measured.jsSum)}, Buffer.compare ${gb(measured.memcmp)}, Buffer.compare on ${Math.max(...threadCounts)} threads ${gb(measured.parallelMemcmp)}; each floor uses the best figure for its thread count`,
  );
  console.log(`repeats ${repeats}, decode ${decodeTokens} tokens per sample; figures are medians (min, max)\n`);
  const decodeAt128 = new Map<string, number>();
  for (const [dtype, kvCacheDtype] of dtypes.flatMap((d) => kvCacheDtypes.map((k) => [d, k] as const))) {
    for (const threads of threadCounts) {
      const load = (maxSequences: number, runtime: SessionRuntime) =>
        Engine.load({
          modelDir,
          dtype,
          kvCacheDtype,
          executionProvider: 'cpu',
          runtime,
          intraOpThreads: threads,
          maxSequences,
          ...(runtime === 'native' ? { maxModelLen: NATIVE_MAX_MODEL_LEN } : {}),
          onnxCacheDir: onnxCacheDirFrom(process.env),
        });
      const samplesOf = new Map<SessionRuntime, Samples>(runtimes.map((runtime) => [runtime, { p128: [], p1024: [], d128: [], d2000: [], b8: [] }]));
      const loadSeconds = new Map<SessionRuntime, number>();
      const attention = new Map<SessionRuntime, string>();
      // Per repeat and runtime: one engine for prefill, decode @128 and batch 8, then another (its own
      // cache, one row) for decode @2000, each alone in the process; repeats interleave runtimes and
      // engines so machine noise hits all alike.
      for (let r = 0; r < repeats; r++) {
        for (const runtime of runtimes) {
          const samples = samplesOf.get(runtime)!;
          const loadStart = performance.now();
          const engine = await load(8, runtime);
          if (r === 0) loadSeconds.set(runtime, (performance.now() - loadStart) / 1000);
          attention.set(runtime, engine.attention);
          await timePrefill(engine, 16); // warm-up
          samples.p128.push(await timePrefill(engine, 128));
          samples.p1024.push(await timePrefill(engine, 1024));
          samples.d128.push(await timeDecode(engine, 128));
          samples.b8.push(await timeBatchDecode(engine, 8));
          await engine.dispose();
          const longContextEngine = await load(1, runtime);
          samples.d2000.push(await timeDecode(longContextEngine, 2000));
          await longContextEngine.dispose();
        }
      }
      for (const runtime of runtimes) {
        const samples = samplesOf.get(runtime)!;
        const d128 = spread(samples.d128);
        const d2000 = spread(samples.d2000);
        const bandwidth = bandwidthFor(threads);
        const bytesPerToken = weightBytesPerToken(configFromHuggingFace(BENCH_125M_CONFIG), dtype);
        const floor = bandwidth / bytesPerToken;
        if (kvCacheDtype === kvCacheDtypes[0] && runtime === runtimes[0]) decodeAt128.set(`${dtype}/${threads}`, d128.median);
        const kv = kvCacheElementType(computeTypeOf(dtype, 'cpu'), kvCacheDtype) === 'float16' ? 'fp16' : 'fp32';
        console.log(
          `${dtype}, KV cache ${kv}, ${threads} thread(s), ${runtime} session, attention ${attention.get(runtime)}, first load ${loadSeconds.get(runtime)!.toFixed(1)} s`,
        );
        console.log(`  prefill 128:        ${show(spread(samples.p128), 'tok/s')}`);
        console.log(`  prefill 1024:       ${show(spread(samples.p1024), 'tok/s')}`);
        console.log(`  decode @128 ctx:    ${show(d128, 'tok/s')}`);
        console.log(`  decode @2000 ctx:   ${show(d2000, 'tok/s')}   ratio 2000/128 ${(d2000.median / d128.median).toFixed(2)}`);
        console.log(`  decode batch 8 @128: ${show(spread(samples.b8), 'tok/s')} aggregate`);
        console.log(
          `  bandwidth floor:    ${floor.toFixed(1)} tok/s (${(bytesPerToken / 1e6).toFixed(0)} MB/token at ${gb(bandwidth)}); decode@128 / floor ${(d128.median / floor).toFixed(2)}`,
        );
      }
      if (runtimes.length > 1) {
        const medians = (key: keyof Samples) => runtimes.map((runtime) => median(samplesOf.get(runtime)![key]));
        for (const key of ['p128', 'p1024', 'd128', 'd2000', 'b8'] as const) {
          const [first, ...rest] = medians(key);
          console.log(`  ${key} ${runtimes.slice(1).join(', ')} / ${runtimes[0]}: ${rest.map((value) => (value / first).toFixed(2)).join(', ')}`);
        }
      }
    }
  }
  for (const threads of threadCounts) {
    const fp32 = decodeAt128.get(`fp32/${threads}`);
    const int4 = decodeAt128.get(`int4/${threads}`);
    if (fp32 && int4) console.log(`int4 / fp32 decode @128, ${threads} thread(s): ${(int4 / fp32).toFixed(2)}`);
  }
  if (threadCounts.length > 1) {
    for (const dtype of dtypes) {
      const [one, two] = threadCounts.map((t) => decodeAt128.get(`${dtype}/${t}`)!);
      console.log(`${dtype} decode @128, ${threadCounts[1]} vs ${threadCounts[0]} threads: ${(two / one).toFixed(2)}`);
    }
  }
  console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
}

if (values.verify) await benchVerifyCost(threadCounts, dtypes, repeats, values.peer);
else await main();
