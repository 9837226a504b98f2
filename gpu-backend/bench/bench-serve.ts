// `npm run bench:serve [-- --threads 2 --decode-tokens 32]`: the serving stack (worker thread, scheduler,
// sampler, prefix cache) on the ~125M Mistral-shaped random model, CPU. Prints a table and writes the raw
// figures to bench-results/; asserts nothing. Peer: the bare engine's batch-1 decode in the same run.
//
// - aggregate decode tokens/s with 1, 4, 8, 16 concurrent streams (target: >= 5x one stream at 8, >= 8x at 16)
// - time to first token, 1000-token system prompt + 20-token question, cold vs prefix-cached (target <= 0.2x)
// - inter-token latency p50/p99 of 4 streams while a 2000-token prompt arrives (target: p99 <= 3x p50)
// LOG_LEVEL=debug prints every engine step (decodes, prefill tokens, milliseconds) to stderr.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_SAMPLING, type GenerateEvent, type SamplingParams } from '../../shared/protocol';
import { BENCH_125M_CONFIG, ensureRandomModel } from '../src/model/checkpoint/default-model';
import { Engine } from '../src/model/runtime/engine';
import { GenerationClient } from '../src/server/generation-client';
import { onnxCacheDirFrom } from '../src/config';
import { benchSpeculativeServe } from './spec-serve';
import { median, percentile } from '../../shared/stats';

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', short: 'h' },
    threads: { type: 'string', default: '2' },
    'decode-tokens': { type: 'string', default: '32' },
    'model-dir': { type: 'string', default: '.models/bench-125m' },
    checkpoint: { type: 'string' },
    'max-batched-tokens': { type: 'string' },
    'prefill-stall-factor': { type: 'string' },
    out: { type: 'string', default: 'bench-results' },
    speculative: { type: 'boolean', default: false },
    runtime: { type: 'string', default: 'js' },
  },
});
if (values.help) {
  console.log(`Usage: npm run bench:serve [-- --threads 2] [--decode-tokens 32] [--model-dir .models/bench-125m]
                            [--max-batched-tokens N] [--prefill-stall-factor F] [--out bench-results] [--speculative]
                            [--runtime js|native] [--checkpoint DIR]
--speculative: only decode tokens/s with prompt-lookup drafts off and on, three workloads (spec-serve.ts),
on the --runtime session (default js), on the random bench model or a trained --checkpoint used as it is.
The serving stack (scheduler, sampler, prefix cache) on a ~125M Mistral-shaped random model: aggregate decode
at 1-16 streams, time to first token cold vs prefix-cached, inter-token latency under a long prompt.
Prints a table and writes raw figures to --out; asserts nothing. LOG_LEVEL=debug prints every engine step.`);
  process.exit(0);
}
const threads = Number(values.threads);
const decodeTokens = Number(values['decode-tokens']);
const MAX_SEQUENCES = 20;

interface Timeline {
  submittedAt: number;
  /** Arrival time (ms) of each token of choice 0 on the HTTP thread, as a client would see it. */
  tokenTimes: number[];
  usage: { promptTokens: number; completionTokens: number; cachedTokens: number } | null;
}

const promptOf = (length: number, salt: number) => Array.from({ length }, (_, i) => 3 + ((i * 7919 + salt * 104_729) % 31_000));

/** `onToken` returning true cancels the request (it then ends with finish reason abort). */
function generate(
  client: GenerationClient,
  tokenIds: number[],
  sampling: Partial<SamplingParams>,
  prefixLength?: number,
  // biome-ignore lint/suspicious/noConfusingVoidType: callers pass plain statement callbacks; true stops the stream
  onToken?: (count: number) => boolean | void,
) {
  const timeline: Timeline = { submittedAt: performance.now(), tokenTimes: [], usage: null };
  const done = new Promise<Timeline>((resolve, reject) => {
    let cancel = () => {};
    const outcome = client.submit(
      { requestId: 'bench', tokenIds, stream: true, prefixLength, sampling: { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, ...sampling } },
      (event: GenerateEvent) => {
        if (event.event === 'token') {
          timeline.tokenTimes.push(performance.now());
          if (onToken?.(timeline.tokenTimes.length)) cancel();
        } else if (event.event === 'end') {
          timeline.usage = event.data.usage;
          resolve(timeline);
        } else if (event.event === 'error') reject(new Error(event.data.message));
      },
    );
    if (!outcome.ok) reject(new Error(outcome.message));
    else cancel = outcome.cancel;
  });
  return done;
}

/** Tokens/s of all streams together from the moment every stream had its first token to the last token. */
async function decodeThroughput(client: GenerationClient, streams: number) {
  const timelines = await Promise.all(
    Array.from({ length: streams }, (_, i) => generate(client, promptOf(16, i + streams * 100), { maxTokens: decodeTokens })),
  );
  const start = Math.max(...timelines.map((t) => t.tokenTimes[0]));
  const end = Math.max(...timelines.map((t) => t.tokenTimes.at(-1)!));
  const tokens = timelines.reduce((sum, t) => sum + t.tokenTimes.filter((time) => time > start).length, 0);
  return { streams, tokensPerSecond: (tokens / (end - start)) * 1000, tokens, seconds: (end - start) / 1000 };
}

async function timeToFirstToken(client: GenerationClient) {
  const results: { kind: 'cold' | 'cached'; ms: number; cachedTokens: number }[] = [];
  for (const system of [1, 2]) {
    const systemIds = [1, ...promptOf(999, 1000 + system)];
    for (const [kind, question] of [
      ['cold', 1],
      ['cached', 2],
      ['cached', 3],
    ] as const) {
      const t = await generate(client, [...systemIds, ...promptOf(20, 2000 + question)], { maxTokens: 1 }, systemIds.length);
      results.push({ kind, ms: t.tokenTimes[0] - t.submittedAt, cachedTokens: t.usage!.cachedTokens });
    }
  }
  const medianOf = (kind: string) => median(results.filter((r) => r.kind === kind).map((r) => r.ms));
  return { coldMs: medianOf('cold'), cachedMs: medianOf('cached'), ratio: medianOf('cached') / medianOf('cold'), runs: results };
}

/**
 * 4 streams decode; when they have 10 tokens a 2000-token prompt arrives; the streams stop 20 tokens
 * after its first token. ITL over the streams' whole life: before, during and after the prefill.
 */
async function latencyUnderPrefill(client: GenerationClient) {
  let longPrompt: Promise<Timeline> | null = null;
  let arrivedAt = 0;
  let prefilledAt = 0;
  const seenAfter = [0, 0, 0, 0];
  const afterPrefill = (i: number) => ++seenAfter[i] > 20;
  const streams = Array.from({ length: 4 }, (_, i) =>
    generate(client, promptOf(16, 500 + i), { maxTokens: 4000 }, undefined, (count) => {
      if (i === 0 && count === 10) {
        arrivedAt = performance.now();
        longPrompt = generate(client, promptOf(2000, 777), { maxTokens: 1 }, undefined, () => {
          prefilledAt = performance.now();
        });
      }
      return prefilledAt > 0 && performance.now() > prefilledAt && count > 10 && afterPrefill(i);
    }),
  );
  const timelines = await Promise.all(streams);
  const long = await longPrompt!;
  const gaps = timelines.flatMap((t) => t.tokenTimes.slice(1).map((time, k) => time - t.tokenTimes[k]));
  const prefillDone = long.tokenTimes[0];
  const during = timelines.flatMap((t) =>
    t.tokenTimes.slice(1).flatMap((time, k) => (time > arrivedAt && time <= prefillDone ? [time - t.tokenTimes[k]] : [])),
  );
  return {
    p50Ms: percentile(gaps, 50),
    p99Ms: percentile(gaps, 99),
    maxMs: Math.max(...gaps),
    ratio: percentile(gaps, 99) / percentile(gaps, 50),
    duringPrefillP50Ms: percentile(during, 50),
    longPromptTtftMs: prefillDone - long.submittedAt,
    streamTokensAfterPrefill: timelines.map((t) => t.tokenTimes.filter((time) => time > prefillDone).length),
  };
}

/** The peer: engine.step alone, one sequence, no scheduler, sampler, worker or messages. */
async function bareDecode(modelDir: string) {
  const engine = await Engine.load({
    modelDir,
    dtype: 'fp32',
    executionProvider: 'cpu',
    intraOpThreads: threads,
    maxSequences: 1,
    onnxCacheDir: onnxCacheDirFrom(process.env),
  });
  try {
    const sequenceId = engine.createSequence();
    await engine.step([{ sequenceId, tokenIds: promptOf(16, 1) }]);
    const start = performance.now();
    for (let i = 0; i < decodeTokens; i++) await engine.step([{ sequenceId, tokenIds: [5 + i] }]);
    return { tokensPerSecond: (decodeTokens / (performance.now() - start)) * 1000 };
  } finally {
    await engine.dispose();
  }
}

async function main(): Promise<void> {
  const modelDir = await ensureRandomModel(path.resolve(values['model-dir']), BENCH_125M_CONFIG, 125);
  // The peer runs before and after the serving runs; the better figure counts (the machine is shared).
  const bareBefore = await bareDecode(modelDir);
  const limits = {
    maxRunning: 16,
    prefixCacheSize: 4,
    ...(values['max-batched-tokens'] && { maxBatchedTokens: Number(values['max-batched-tokens']) }),
    ...(values['prefill-stall-factor'] && { prefillStallFactor: Number(values['prefill-stall-factor']) }),
  };
  const client = GenerationClient.inWorker({
    engine: {
      kind: 'onnx',
      options: {
        modelDir,
        dtype: 'fp32',
        executionProvider: 'cpu',
        intraOpThreads: threads,
        maxSequences: MAX_SEQUENCES,
        maxModelLen: 4096,
        onnxCacheDir: onnxCacheDirFrom(process.env),
      },
    },
    limits,
    logStepTransfers: process.env.LOG_LEVEL === 'debug',
  });
  // LOG_LEVEL=debug: one stderr line per engine step (decodes, prefill tokens, wall time), timestamped.
  client.onLog = (_level, message) => console.error(`[engine ${performance.now().toFixed(0)}] ${message}`);
  let results;
  try {
    await client.whenReady();
    console.error(`bench:serve: ${modelDir}, CPU, ${threads} threads, limits ${JSON.stringify(client.limits)}`);
    const decode = [];
    for (const streams of [1, 4, 8, 16]) {
      decode.push(await decodeThroughput(client, streams));
      console.error(`  decode x${streams}: ${decode.at(-1)!.tokensPerSecond.toFixed(1)} tok/s`);
    }
    const ttft = await timeToFirstToken(client);
    console.error(`  ttft cold ${ttft.coldMs.toFixed(0)} ms, cached ${ttft.cachedMs.toFixed(0)} ms`);
    const itl = await latencyUnderPrefill(client);
    results = { decode, ttft, itl, limits: client.limits };
  } finally {
    await client.close();
  }
  const bareAfter = await bareDecode(modelDir);
  const bare = {
    tokensPerSecond: Math.max(bareBefore.tokensPerSecond, bareAfter.tokensPerSecond),
    before: bareBefore.tokensPerSecond,
    after: bareAfter.tokensPerSecond,
  };
  const single = results.decode[0].tokensPerSecond;
  const rows = [
    ['measure', 'value', 'target'],
    ['bare engine decode, batch 1 (peer)', `${bare.tokensPerSecond.toFixed(1)} tok/s`, ''],
    ...results.decode.map((d) => [
      `decode, ${d.streams} stream(s)`,
      `${d.tokensPerSecond.toFixed(1)} tok/s (${(d.tokensPerSecond / single).toFixed(2)}x)`,
      d.streams === 8 ? '>= 5x' : d.streams === 16 ? '>= 8x' : d.streams === 1 ? `${((single / bare.tokensPerSecond) * 100).toFixed(0)}% of peer` : '',
    ]),
    ['TTFT cold, 1000 + 20 tokens', `${results.ttft.coldMs.toFixed(0)} ms`, ''],
    ['TTFT prefix-cached', `${results.ttft.cachedMs.toFixed(0)} ms (${results.ttft.ratio.toFixed(3)}x)`, '<= 0.2x'],
    ['ITL p50, 4 streams + 2000-token prompt', `${results.itl.p50Ms.toFixed(1)} ms`, ''],
    ['ITL p99', `${results.itl.p99Ms.toFixed(1)} ms (${results.itl.ratio.toFixed(2)}x p50)`, '<= 3x'],
    ['ITL max / p50 during the prefill', `${results.itl.maxMs.toFixed(1)} / ${results.itl.duringPrefillP50Ms.toFixed(1)} ms`, ''],
    ['TTFT of the 2000-token prompt', `${results.itl.longPromptTtftMs.toFixed(0)} ms`, ''],
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c])).join('  '));
  mkdirSync(values.out, { recursive: true });
  const file = path.join(values.out, `bench-serve-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), threads, decodeTokens, bare, ...results }, null, 2)}\n`);
  console.log(`raw figures: ${file}`);
}

if (values.runtime !== 'js' && values.runtime !== 'native') throw new Error(`--runtime must be js or native, got ${values.runtime}`);
const runtime = values.runtime;
const run = values.speculative
  ? async () =>
      benchSpeculativeServe(
        values.checkpoint ? path.resolve(values.checkpoint) : await ensureRandomModel(path.resolve(values['model-dir']), BENCH_125M_CONFIG, 125),
        threads,
        decodeTokens,
        runtime,
      )
  : main;
run().catch((error: Error) => {
  console.error(`bench:serve failed: ${error.stack ?? error.message}`);
  process.exit(1);
});
