// Tokenizer benchmark inside workerd (printed, not asserted): throughput on ~100 KB of text and the cost of a
// ~1000-token chat prompt, against the peer JS encoder (mistral-tokenizer-js) measured in the same run and the
// C++ SentencePiece figure from this machine kind. Run: npx tsx edge/bench/bench-tokenizer.ts
// (needs edge/generated/tokenizer.json: npm run build:tokenizer).

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { unstable_startWorker } from 'wrangler';
import { median } from '../../shared/stats';

const CPP_SENTENCEPIECE_TOKENS_PER_SECOND = 296_000; // measured on this machine kind (issue 5)
const entrypoint = fileURLToPath(new URL('./tokenizer-bench-worker.ts', import.meta.url));

type Worker = Awaited<ReturnType<typeof unstable_startWorker>>;

async function call(worker: Worker, path: string): Promise<{ ms: number; body: Record<string, number> }> {
  const start = performance.now();
  const response = await worker.fetch(`http://bench${path}`);
  const body = (await response.json()) as Record<string, number>;
  return { ms: performance.now() - start, body };
}

/** Median wall time of `runs` calls, minus the median of an empty request (the round trip). */
async function measure(worker: Worker, path: string, runs: number, overheadMs: number): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run < runs; run++) times.push((await call(worker, path)).ms);
  return Math.max(0, median(times) - overheadMs);
}

const USAGE = `Usage: npm run bench:tokenizer
Tokenizer throughput inside workerd on ~100 KB of text and the cost of a ~1000-token chat prompt, against
mistral-tokenizer-js measured in the same run. Needs edge/generated/tokenizer.json (npm run build:tokenizer).
Prints figures; asserts nothing.`;

async function main(): Promise<void> {
  if (parseArgs({ options: { help: { type: 'boolean', short: 'h' } }, strict: true }).values.help) {
    console.log(USAGE);
    return;
  }
  // Offline, wrangler would print a stack trace for the Request.cf metadata it fails to fetch; the benchmark needs none.
  process.env.CLOUDFLARE_CF_FETCH_ENABLED ??= 'false';
  process.env.WRANGLER_SEND_METRICS ??= 'false';
  // A config of its own: otherwise wrangler finds the project's wrangler.toml (Durable Objects, KV) upward.
  const configDir = mkdtempSync(join(tmpdir(), 'bench-tokenizer-'));
  const config = join(configDir, 'wrangler.json');
  writeFileSync(config, JSON.stringify({ name: 'bench-tokenizer', main: entrypoint, compatibility_date: '2026-04-01' }));
  const worker = await unstable_startWorker({ config, dev: { server: { port: 0 }, inspector: false, logLevel: 'error', watch: false } });
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('workerd did not start within 120 s')), 120_000);
    });
    await Promise.race([worker.ready, timeout]).finally(() => clearTimeout(timer));
    const setup = (await call(worker, '/setup')).body;
    for (let run = 0; run < 3; run++) await call(worker, '/encode'); // JIT warm-up
    const overhead = await measure(worker, '/noop', 15, 0);
    const rows: [string, number, string][] = [];
    const perSecond = (tokens: number, ms: number) => Math.round(tokens / (ms / 1000));

    const tables = await measure(worker, '/build-tables', 3, overhead);
    rows.push(['build tables from the asset (once per isolate)', tables, 'ms']);
    const coldRuns: number[] = [];
    for (let run = 0; run < 3; run++) {
      await call(worker, '/fresh');
      coldRuns.push(await measure(worker, '/encode', 1, overhead));
    }
    const cold = coldRuns.sort((a, b) => a - b)[1];
    const warm = (await measure(worker, '/encode?iterations=10', 5, overhead)) / 10;
    const uncachedMs = await measure(worker, '/encode-uncached', 3, overhead);
    const peer = await measure(worker, '/encode-peer', 3, overhead);
    const tokens = setup.tokenCount;
    rows.push(['100 KB, first pass (chunk cache filling)', perSecond(tokens, cold), 'tokens/s']);
    rows.push(['100 KB, repeat pass (chunk cache warm)', perSecond(tokens, warm), 'tokens/s']);
    rows.push(['100 KB, chunk cache off', perSecond(tokens, uncachedMs), 'tokens/s']);
    rows.push(['100 KB, peer mistral-tokenizer-js', perSecond(tokens, peer), 'tokens/s']);

    await call(worker, '/fresh');
    const promptCold = (await measure(worker, '/prompt?iterations=64', 1, overhead)) / 64;
    const promptUncached = (await measure(worker, '/prompt-uncached?iterations=64', 3, overhead)) / 64;
    const promptRepeat = (await measure(worker, '/prompt-repeat?iterations=200', 3, overhead)) / 200;
    rows.push([`chat prompt of ${setup.promptTokens} tokens, unseen text (fresh cache)`, promptCold, 'ms']);
    rows.push([`chat prompt of ${setup.promptTokens} tokens, chunk cache off`, promptUncached, 'ms']);
    rows.push([`chat prompt of ${setup.promptTokens} tokens, same text again`, promptRepeat, 'ms']);

    console.log(
      `tokenizer benchmark in workerd: ${setup.bytes} bytes, ${tokens} tokens (${(setup.bytes / tokens).toFixed(2)} bytes/token), round trip ${overhead.toFixed(2)} ms subtracted`,
    );
    for (const [label, value, unit] of rows) {
      const shown = unit === 'ms' ? value.toFixed(3) : value.toLocaleString('en-US');
      console.log(`  ${label.padEnd(58)} ${shown.padStart(12)} ${unit}`);
    }
    const vsCpp = (ms: number) => (perSecond(tokens, ms) / CPP_SENTENCEPIECE_TOKENS_PER_SECOND).toFixed(2);
    console.log(
      `  vs C++ SentencePiece (${CPP_SENTENCEPIECE_TOKENS_PER_SECOND.toLocaleString('en-US')} tokens/s): first pass ${vsCpp(cold)}x, warm ${vsCpp(warm)}x, cache off ${vsCpp(uncachedMs)}x; vs peer JS: first pass ${(peer / cold).toFixed(1)}x`,
    );
  } finally {
    // The temp folder stays: wrangler's bundler still watches it right after dispose() and errors if it vanishes.
    await worker.dispose();
  }
}

main().catch((error: unknown) => {
  // One line, not a stack: the usual causes are wrangler failing to start workerd or a missing asset.
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  console.error(`bench:tokenizer failed: ${message}`);
  process.exit(1);
});
