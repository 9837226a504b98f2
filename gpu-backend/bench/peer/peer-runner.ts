// One measurement round of one engine, alone in its process (bench-peer.ts spawns it): our engine or
// llama.cpp through node-llama-cpp, the same prompts and the same greedy decoding for both. Prints one
// line `RESULT <json>` on stdout. `--help` for usage.

import { parseArgs } from 'node:util';
import { INT4_BLOCK_SIZE } from '../../src/model/graph/quantize-int4';
import { Engine } from '../../src/model/runtime/engine';
import type { SessionRuntime, WeightFormat } from '../../src/model/runtime/engine-types';
import { onnxCacheDirFrom } from '../../src/config';

const USAGE = `usage: node --import tsx gpu-backend/bench/peer/peer-runner.ts --engine ours|llama --format fp32|int4 (--model-dir DIR | --gguf FILE)
  [--threads 2] [--decode-tokens 64] [--long-context 2000] [--batches 4,8] [--kv-cache-dtype auto|fp16] [--runtime js|native] [--int4-block-size 64] [--chunk-size N] [--prepare]
One round of bench:peer in its own process; prints RESULT {json}. Run by npm run bench:peer, rarely by hand.`;

const { values } = parseArgs({
  options: {
    engine: { type: 'string' },
    format: { type: 'string', default: 'fp32' },
    'model-dir': { type: 'string' },
    gguf: { type: 'string' },
    threads: { type: 'string', default: '2' },
    'decode-tokens': { type: 'string', default: '64' },
    'long-context': { type: 'string', default: '2000' },
    batches: { type: 'string', default: '4,8' },
    'kv-cache-dtype': { type: 'string', default: 'auto' },
    runtime: { type: 'string', default: 'js' },
    'int4-block-size': { type: 'string', default: String(INT4_BLOCK_SIZE) },
    'chunk-size': { type: 'string' },
    prepare: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

/** What both engines offer the measurements: greedy next ids of sequence slots. */
interface PeerEngine {
  /** Feeds `prompt` to slot `slot` (empty) and returns the greedy next id. */
  prefill(slot: number, prompt: number[]): Promise<number>;
  /** Feeds one id to each slot together (one batched step) and returns each slot's greedy next id. */
  decode(slots: number[], tokenIds: number[]): Promise<number[]>;
  clear(slot: number): Promise<void>;
  dispose(): Promise<void>;
}

export const promptOf = (length: number, salt = 0) => Array.from({ length }, (_, i) => 3 + ((i * 7919 + salt * 104_729) % 31_000));

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

async function loadOurs(modelDir: string, format: WeightFormat, threads: number, slots: number, contextLength: number): Promise<PeerEngine> {
  const engine = await Engine.load({
    modelDir,
    dtype: format,
    executionProvider: 'cpu',
    intraOpThreads: threads,
    maxSequences: slots,
    maxModelLen: contextLength,
    kvCacheDtype: values['kv-cache-dtype'] as 'auto' | 'fp16',
    runtime: values.runtime as SessionRuntime,
    int4BlockSize: Number(values['int4-block-size']),
    chunkSize: values['chunk-size'] === undefined ? undefined : Number(values['chunk-size']),
    onnxCacheDir: onnxCacheDirFrom(process.env),
  });
  const ids: (number | null)[] = Array.from({ length: slots }, () => null);
  const idOf = (slot: number) => (ids[slot] ??= engine.createSequence());
  return {
    prefill: async (slot, prompt) => argmax((await engine.step([{ sequenceId: idOf(slot), tokenIds: prompt }]))[0]),
    decode: async (slotList, tokenIds) => (await engine.step(slotList.map((slot, i) => ({ sequenceId: idOf(slot), tokenIds: [tokenIds[i]] })))).map(argmax),
    clear: async (slot) => {
      if (ids[slot] !== null) engine.releaseSequence(ids[slot]!);
      ids[slot] = null;
    },
    dispose: () => engine.dispose(),
  };
}

/**
 * llama.cpp at its best here: explicit threads (maxThreads 0 makes `threads` exact), a context of
 * `slots` sequences x `contextLength` cells (the same KV capacity our engine gets), greedy through
 * controlledEvaluate so both engines do the same work per call: a prompt or one id per sequence.
 */
async function loadLlama(ggufPath: string, threads: number, slots: number, contextLength: number): Promise<PeerEngine> {
  const specifier = new URL('./node_modules/node-llama-cpp/dist/index.js', import.meta.url).href;
  const { getLlama } = await import(specifier);
  const llama = await getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, maxThreads: 0, logLevel: 'error', progressLogs: false });
  const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: contextLength, sequences: slots, threads, batchSize: 512 });
  const sequences = Array.from({ length: slots }, () => context.getSequence());
  const next = async (slot: number, tokenIds: number[]): Promise<number> => {
    const input = tokenIds.map((id: number, i: number) =>
      i === tokenIds.length - 1 ? [id, { generateNext: { token: true, options: { temperature: 0 } } }] : id,
    );
    const results = await sequences[slot].controlledEvaluate(input);
    return results.at(-1).next.token;
  };
  return {
    prefill: (slot, prompt) => next(slot, prompt),
    // Concurrent calls on different sequences are batched into one llama_decode by node-llama-cpp.
    decode: (slotList, tokenIds) => Promise.all(slotList.map((slot, i) => next(slot, [tokenIds[i]]))),
    clear: (slot) => sequences[slot].clearHistory(),
    dispose: async () => {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

const seconds = (since: number) => (performance.now() - since) / 1000;

async function main(): Promise<void> {
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const threads = Number(values.threads);
  const decodeTokens = Number(values['decode-tokens']);
  const longContext = Number(values['long-context']);
  const batches = values.batches.split(',').map(Number);
  const slots = Math.max(1, ...batches);
  const contextLength = Math.ceil((Math.max(128, longContext) + decodeTokens + 16) / 64) * 64;
  const loadStart = performance.now();
  const engine =
    values.engine === 'ours'
      ? await loadOurs(values['model-dir']!, values.format as WeightFormat, threads, slots, contextLength)
      : values.engine === 'llama'
        ? await loadLlama(values.gguf!, threads, slots, contextLength)
        : (console.error(USAGE), process.exit(2));
  const loadSeconds = seconds(loadStart);
  const rssAfterLoadMiB = process.memoryUsage().rss / 2 ** 20;
  if (values.prepare) {
    // Only builds or loads the cached graph, so the measured rounds never include a build.
    await engine.dispose();
    console.log(`RESULT ${JSON.stringify({ loadSeconds, cpuSeconds: 0 })}`);
    return;
  }

  /**
   * Greedy decode of `decodeTokens` ids after a `context`-token prompt, the slots in `slotList` together.
   * The first slot's prompt is timed too: that is the prefill figure (one prefill per context length).
   */
  const decode = async (context: number, slotList: number[]) => {
    const current: number[] = [];
    let prefillRate = 0;
    for (const slot of slotList) {
      const start = performance.now();
      current.push(await engine.prefill(slot, promptOf(context, slot)));
      if (slot === slotList[0]) prefillRate = context / seconds(start);
    }
    const generated = [current.slice()];
    const start = performance.now();
    for (let i = 0; i < decodeTokens; i++) generated.push(await engine.decode(slotList, generated.at(-1)!));
    const rate = (decodeTokens * slotList.length) / seconds(start);
    for (const slot of slotList) await engine.clear(slot);
    return { rate, prefillRate, tokenIds: generated.map((row) => row[0]) };
  };

  await engine.prefill(0, promptOf(16, 99)); // warm-up
  await engine.clear(0);
  const result: Record<string, unknown> = { engine: values.engine, format: values.format, threads, loadSeconds, rssAfterLoadMiB };
  const short = await decode(128, [0]);
  result.prefill128 = short.prefillRate;
  result.decode128 = short.rate;
  result.greedyTokenIds = short.tokenIds;
  const long = await decode(longContext, [0]);
  result.prefillLong = long.prefillRate;
  result.decodeLong = long.rate;
  for (const batch of batches)
    result[`aggregate${batch}`] = (
      await decode(
        128,
        Array.from({ length: batch }, (_, i) => i),
      )
    ).rate;
  result.peakRssMiB = process.resourceUsage().maxRSS / 1024;
  const cpu = process.cpuUsage(); // since the process started: imports and load included
  result.cpuSeconds = (cpu.user + cpu.system) / 1e6;
  await engine.dispose();
  console.log(`RESULT ${JSON.stringify(result)}`);
}

await main();
