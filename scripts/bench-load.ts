// `npm run bench:load -- --help`: the whole stack under load. Local backend + edge (wrangler dev), a key
// with generous limits, N concurrent streaming chats through the official `openai` client for a bounded
// time per level (loopback only; it stops by itself), half of them on a stored 1000-token named system
// prompt. Prints requests/s, output tokens/s, TTFT and ITL p50/p95/p99, errors by kind, backend RSS
// before/after; writes JSON to bench-results/ and, with --charts DIR, SVG charts. Asserts nothing.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { lineChart, writeChart, type SeriesPoint } from '../gpu-backend/bench/charts';
import { machineDescription } from '../gpu-backend/bench/machine';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/checkpoint/default-model';
import { createLocalKey, freePort, generateApiKey, REPO_ROOT, startStack } from './stack';
import { percentile } from '../shared/stats';

const USAGE = `usage: npm run bench:load -- [options]
  --concurrency 1,4,16,32   concurrent streaming chats per level
  --seconds 20              how long each level starts new requests (in-flight ones then finish)
  --max-tokens 32           completion tokens per request
  --model DIR               checkpoint for the backend (default: the built-in random tiny model)
  --threads 2               backend threads
  --max-sequences 48        backend KV rows (enough for every stream at 32 plus prefix snapshots)
  --charts DIR              also write DIR/load-throughput.svg, DIR/load-latency.svg and DIR/load.json
  --out bench-results       where the raw JSON goes`;

const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '1,4,16,32' },
    seconds: { type: 'string', default: '20' },
    'max-tokens': { type: 'string', default: '32' },
    model: { type: 'string' },
    threads: { type: 'string', default: '2' },
    'max-sequences': { type: 'string', default: '48' },
    charts: { type: 'string' },
    out: { type: 'string', default: 'bench-results' },
    help: { type: 'boolean', default: false },
  },
});

const SYSTEM_PROMPT_NAME = 'bench-load-system';
/** ~1000 tokens of plain English in the v1 tokenizer (the count the edge reports is printed). */
const SYSTEM_PROMPT = Array.from({ length: 48 }, (_, i) => `Rule ${i + 1}: answer briefly, cite the section you rely on, and never invent figures.`).join(' ');

interface RequestRecord {
  shared: boolean;
  ttftMs: number | null;
  itlMs: number[];
  outputTokens: number;
  cachedTokens: number;
  promptTokens: number;
  error: string | null;
}

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

function errorKind(error: unknown): string {
  if (error instanceof OpenAI.APIError) return `${error.status ?? 'stream'} ${error.code ?? error.type ?? 'error'}`;
  return (error as Error).name || 'Error';
}

async function oneChat(client: OpenAI, model: string, shared: boolean, index: number, maxTokens: number): Promise<RequestRecord> {
  const record: RequestRecord = { shared, ttftMs: null, itlMs: [], outputTokens: 0, cachedTokens: 0, promptTokens: 0, error: null };
  const start = performance.now();
  let last = start;
  try {
    const stream = await client.chat.completions.create({
      model: shared ? `${model}@${SYSTEM_PROMPT_NAME}` : model,
      messages: [{ role: 'user', content: `Question ${index}: what does rule ${(index % 48) + 1} ask for?` }],
      max_tokens: maxTokens,
      temperature: 0.8,
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      if (chunk.usage) {
        record.outputTokens = chunk.usage.completion_tokens;
        record.promptTokens = chunk.usage.prompt_tokens;
        record.cachedTokens = chunk.usage.prompt_tokens_details?.cached_tokens ?? 0;
      }
      if (!chunk.choices[0]?.delta?.content) continue;
      const now = performance.now();
      if (record.ttftMs === null) record.ttftMs = now - start;
      else record.itlMs.push(now - last);
      last = now;
    }
  } catch (error) {
    record.error = errorKind(error);
  }
  return record;
}

/** `streams` workers each run chats back to back until `seconds` pass; half use the stored system prompt. */
async function level(client: OpenAI, model: string, streams: number, seconds: number, maxTokens: number) {
  const deadline = performance.now() + seconds * 1000;
  const records: RequestRecord[] = [];
  const start = performance.now();
  let counter = 0;
  await Promise.all(
    Array.from({ length: streams }, async (_, worker) => {
      while (performance.now() < deadline) records.push(await oneChat(client, model, worker % 2 === 0, counter++, maxTokens));
    }),
  );
  const wall = (performance.now() - start) / 1000;
  const ok = records.filter((r) => r.error === null);
  const ttft = ok.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs]));
  const itl = ok.flatMap((r) => r.itlMs);
  const errors: Record<string, number> = {};
  for (const r of records) if (r.error) errors[r.error] = (errors[r.error] ?? 0) + 1;
  const sharedOk = ok.filter((r) => r.shared);
  return {
    streams,
    requests: records.length,
    seconds: wall,
    requestsPerSecond: ok.length / wall,
    outputTokensPerSecond: ok.reduce((sum, r) => sum + r.outputTokens, 0) / wall,
    ttft: { p50: percentile(ttft, 50), p95: percentile(ttft, 95), p99: percentile(ttft, 99) },
    itl: { p50: percentile(itl, 50), p95: percentile(itl, 95), p99: percentile(itl, 99) },
    errors,
    sharedPromptTokens: sharedOk[0]?.promptTokens ?? 0,
    sharedCachedTokensMedian: percentile(
      sharedOk.map((r) => r.cachedTokens),
      50,
    ),
  };
}

async function createKey(persistTo: string): Promise<string> {
  const { secret } = await createLocalKey(persistTo, 'bench-load', { rpm: 1_000_000, tpm: 1_000_000_000, concurrent: 256 });
  const stored = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'edge/scripts/prompts.ts', 'put', SYSTEM_PROMPT_NAME, '--text', SYSTEM_PROMPT, '--persist-to', persistTo],
    { cwd: REPO_ROOT, encoding: 'utf8' },
  );
  if (stored.status !== 0) throw new Error(`prompts put failed: ${stored.stdout}${stored.stderr}`);
  return secret;
}

async function main(): Promise<void> {
  if (values.help) return console.log(USAGE);
  const levels = values.concurrency.split(',').map(Number);
  const seconds = Number(values.seconds);
  const maxTokens = Number(values['max-tokens']);
  const modelDir = values.model ? path.resolve(values.model) : await ensureDefaultModel(DEFAULT_MODEL_DIR);
  // The edge bundles the built-in Mistral v1 tokenizer (fine for the random models here: vocabulary 32000).
  const built = spawnSync(process.execPath, ['--import', 'tsx', 'edge/scripts/build-tokenizer.ts'], { cwd: REPO_ROOT, stdio: 'inherit' });
  if (built.status !== 0) throw new Error('building the edge tokenizer asset failed');
  const persistTo = mkdtempSync(path.join(tmpdir(), 'bench-load-edge-'));
  const secret = await createKey(persistTo);
  const stack = await startStack({
    modelDir,
    backendPort: await freePort(),
    edgePort: await freePort(),
    persistTo,
    apiKey: generateApiKey(),
    backendArgs: ['--threads', values.threads, '--max-sequences', values['max-sequences']],
    log: (line) => (/error/i.test(line) ? process.stderr.write(`${line}\n`) : undefined),
  });
  const report: Record<string, unknown> = {
    machine: machineDescription(),
    cpus: os.availableParallelism(),
    date: new Date().toISOString(),
    model: modelDir,
    maxTokens,
    seconds,
  };
  try {
    const client = new OpenAI({ baseURL: `${stack.edgeUrl}/v1`, apiKey: secret, maxRetries: 0, timeout: 120_000 });
    const model = stack.modelInfo.modelId;
    const rssBefore = rssMiB(stack.pids.backend);
    await oneChat(client, model, true, 0, 4); // stores the system prompt's ids at the edge and its prefix in the backend
    console.log(`${report.machine}; model ${modelDir}; ${seconds} s per level, ${maxTokens} tokens per request; backend RSS ${rssBefore.toFixed(0)} MiB`);
    const results = [];
    for (const streams of levels) {
      const r = await level(client, model, streams, seconds, maxTokens);
      results.push(r);
      const ms = (x: number) => x.toFixed(0);
      console.log(
        `${String(streams).padStart(3)} streams: ${r.requests} requests, ${r.requestsPerSecond.toFixed(2)} req/s, ${r.outputTokensPerSecond.toFixed(1)} output tok/s; ` +
          `TTFT p50/p95/p99 ${ms(r.ttft.p50)}/${ms(r.ttft.p95)}/${ms(r.ttft.p99)} ms (p99/p50 ${(r.ttft.p99 / r.ttft.p50).toFixed(1)}x); ITL p50/p95/p99 ${ms(r.itl.p50)}/${ms(r.itl.p95)}/${ms(r.itl.p99)} ms; ` +
          `errors ${JSON.stringify(r.errors)}; shared prompt ${r.sharedPromptTokens} tokens, median cached ${r.sharedCachedTokensMedian}`,
      );
    }
    const rssAfter = rssMiB(stack.pids.backend);
    console.log(`backend RSS before ${rssBefore.toFixed(0)} MiB, after ${rssAfter.toFixed(0)} MiB`);
    Object.assign(report, { rssBeforeMiB: rssBefore, rssAfterMiB: rssAfter, levels: results });
  } finally {
    await stack.stop();
    rmSync(persistTo, { recursive: true, force: true });
  }
  mkdirSync(path.resolve(values.out), { recursive: true });
  const file = path.join(path.resolve(values.out), `load-${Date.now()}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`raw figures: ${file}`);
  if (values.charts) await writeLoadCharts(report, path.resolve(values.charts));
}

async function writeLoadCharts(report: Record<string, unknown>, dir: string): Promise<void> {
  const levels = report.levels as Awaited<ReturnType<typeof level>>[];
  const subtitle = `${report.machine}, ${String(report.date).slice(0, 10)}; ${report.seconds} s per level, ${report.maxTokens} tokens per request`;
  const throughput: SeriesPoint[] = levels.flatMap((l) => [
    { x: l.streams, y: l.outputTokensPerSecond, series: 'output tokens/s', panel: 'output tokens/s' },
    { x: l.streams, y: l.requestsPerSecond, series: 'requests/s', panel: 'requests/s' },
  ]);
  const latency: SeriesPoint[] = levels.flatMap((l) =>
    (['p50', 'p95', 'p99'] as const).flatMap((p) => [
      { x: l.streams, y: l.ttft[p], series: p, panel: 'time to first token (ms)' },
      { x: l.streams, y: l.itl[p], series: p, panel: 'inter-token latency (ms)' },
    ]),
  );
  await writeChart(
    path.join(dir, 'load-throughput.svg'),
    lineChart('Whole stack: throughput vs concurrent streams', subtitle, 'concurrent streams', throughput),
  );
  await writeChart(path.join(dir, 'load-latency.svg'), lineChart('Whole stack: latency vs concurrent streams', subtitle, 'concurrent streams', latency));
  writeFileSync(path.join(dir, 'load.json'), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`charts: ${dir}/load-throughput.svg, ${dir}/load-latency.svg`);
}

await main();
