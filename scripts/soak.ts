// `npm run soak`: waves of mixed chats through the real local stack (backend + wrangler dev, loopback only),
// some aborted at random times, some over their key's concurrency, then checks that everything let go:
// streams ended with [DONE] or an in-band error, no key holds a slot, the backend is idle with its idle KV
// figure, and how resident memory of backend and edge moves per wave. Prints figures; exits 1 on a failed check.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/checkpoint/default-model';
import { EdgeMemory } from './edge-memory';
import { backendGauges, settle, slope, treeRssMb } from './soak-probes';
import { createLocalKey, freeEdgePort, freePort, generateApiKey, startStack, type Stack } from './stack';

const USAGE = `Usage: npm run soak [-- --waves 10] [--requests 12] [--seconds 600] [--threads 1] [--seed 1] [--heap DIR] [--idle SECONDS]
Drives waves of mixed streaming/non-streaming chats (some aborted, some over their key's concurrency)
through a local stack on free loopback ports with the built-in model, then checks after every wave:
  - every admitted stream ended with data: [DONE] or an in-band error (no cut connection)
  - no key holds a slot: a key of concurrency N admits N concurrent requests
  - backend running and waiting back to 0, and every engine sequence free again except the prefix
    cache's snapshots (which the cache keeps on purpose: free sequences + snapshots = the idle free count)
and prints backend and edge resident memory per wave with its slope. Stops after --waves or --seconds.
Each edge process's memory (wrangler's node, its workerd processes) is printed per wave; with --heap DIR
also the edge worker's live JS heap (from a heap snapshot), keeping the first and last wave's snapshots in DIR.
With --idle SECONDS the stack then idles that long, sampled every 30 s (edge and backend RSS, and with
--heap the worker's live heap), to show whether memory is given back.
Exit 0 when every check held, 1 otherwise.`;

/** A request of the mix takes well under a second here; one still open after this has hung. */
const REQUEST_TIMEOUT_MS = 60_000;
const WIDE = { key: '', concurrent: 16 };
const NARROW = { key: '', concurrent: 2 };

interface WaveTally {
  sent: number;
  aborted: number;
  refused429: number;
  completed: number;
  failures: string[];
}

/** A small deterministic PRNG, so a wave mix can be replayed with --seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

function chat(stack: Stack, key: string, body: object, signal?: AbortSignal): Promise<Response> {
  return fetch(`${stack.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: stack.modelInfo.modelId, ...body }),
    signal,
  });
}

/** Reads a body to its end, keeping what arrived if it fails or hangs (for the report). */
async function readAll(response: Response, got: { text: string }): Promise<void> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    got.text += value;
  }
}

/** One request of the mix; records what the client saw. A request with no end after REQUEST_TIMEOUT_MS fails. */
async function oneRequest(stack: Stack, key: string, random: () => number, tally: WaveTally, label: string): Promise<void> {
  const stream = random() < 0.6;
  const abortAfterMs = random() < 0.3 ? Math.floor(random() * 400) : null;
  const controller = new AbortController();
  const deadline = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  const timer = abortAfterMs === null ? undefined : setTimeout(() => controller.abort(), abortAfterMs);
  tally.sent++;
  const body = { stream, max_tokens: 8 + Math.floor(random() * 56), temperature: 0.8, messages: [{ role: 'user', content: `Soak ${label}: say something.` }] };
  const got = { text: '' };
  let status = 0;
  try {
    const response = await chat(stack, key, body, AbortSignal.any([controller.signal, deadline]));
    status = response.status;
    await readAll(response, got);
    if (status === 429) return void tally.refused429++;
    if (status !== 200) return void tally.failures.push(`${label}: HTTP ${status} ${got.text.slice(0, 160)}`);
    if (stream) {
      const events = got.text.trimEnd().split('\n\n');
      const ended = events.at(-1) === 'data: [DONE]' || events.some((event) => event.includes('"error"'));
      if (!ended) tally.failures.push(`${label}: stream ended without [DONE] or an in-band error: ...${got.text.slice(-160)}`);
    } else if (!(JSON.parse(got.text) as { choices?: unknown[] }).choices) {
      tally.failures.push(`${label}: non-streaming body without choices: ${got.text.slice(0, 160)}`);
    }
    tally.completed++;
  } catch (error) {
    const kind = `${stream ? 'stream' : 'non-streaming'}, ${status ? `HTTP ${status}, ${got.text.length} bytes` : 'no response yet'}`;
    if (controller.signal.aborted) tally.aborted++;
    else if (deadline.aborted) tally.failures.push(`${label}: no end after ${REQUEST_TIMEOUT_MS / 1000} s (${kind}): ...${got.text.slice(-120)}`);
    else tally.failures.push(`${label}: ${(error as Error).message}, a cut connection (${kind})`);
  } finally {
    clearTimeout(timer);
  }
}

/** The message of an OpenAI-shaped error body; null for anything else (wrangler's own plain-text 503s). */
function errorMessageOf(text: string): string | null {
  try {
    return (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? null;
  } catch {
    return null;
  }
}

/** A key of concurrency N must admit N concurrent one-token requests once the wave is over. */
async function slotsFree(stack: Stack, key: { key: string; concurrent: number }, name: string): Promise<string | null> {
  let why = '';
  const statuses = await Promise.all(
    Array.from({ length: key.concurrent }, async () => {
      const response = await chat(
        stack,
        key.key,
        { max_tokens: 1, messages: [{ role: 'user', content: 'ping' }] },
        AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      ).catch((error: Error) => error);
      if (response instanceof Error) return ((why ||= `no answer within ${REQUEST_TIMEOUT_MS / 1000} s: ${response.message}`), 0);
      const text = await response.text();
      if (response.status !== 200) why ||= (errorMessageOf(text) ?? text).slice(0, 120);
      return response.status;
    }),
  );
  const refused = statuses.filter((status) => status !== 200).length;
  return refused === 0
    ? null
    : `key ${name} (concurrency ${key.concurrent}): ${refused} of ${key.concurrent} concurrent requests refused after the wave ("${why}"): a slot is still held`;
}

interface SoakArgs {
  waves: number;
  requests: number;
  seconds: number;
  seed: number;
  threads: string;
  heap: string | undefined;
  idle: number;
}

/** The flags, or null for --help. */
function parseSoakArgs(): SoakArgs | null {
  const { values } = parseArgs({
    options: {
      waves: { type: 'string', default: '10' },
      requests: { type: 'string', default: '12' },
      seconds: { type: 'string', default: '600' },
      threads: { type: 'string', default: '1' },
      seed: { type: 'string', default: '1' },
      heap: { type: 'string' },
      idle: { type: 'string', default: '0' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return null;
  const [waves, requests, seconds, seed] = (['waves', 'requests', 'seconds', 'seed'] as const).map((name) => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got "${values[name]}"`);
    return value;
  });
  const idle = Number(values.idle);
  if (!Number.isInteger(idle) || idle < 0) throw new Error(`--idle must be a whole number of seconds, got "${values.idle}"`);
  return { waves, requests, seconds, seed, threads: values.threads, heap: values.heap, idle };
}

/** The two soak keys go into `persistTo` before the edge starts, which then reads them from there. */
async function startSoakStack(persistTo: string, threads: string): Promise<{ stack: Stack; edgePort: number }> {
  WIDE.key = (await createLocalKey(persistTo, 'soak-wide', { rpm: 1_000_000, tpm: 1_000_000_000, concurrent: WIDE.concurrent })).secret;
  NARROW.key = (await createLocalKey(persistTo, 'soak-narrow', { rpm: 1_000_000, tpm: 1_000_000_000, concurrent: NARROW.concurrent })).secret;
  const edgePort = await freeEdgePort();
  const stack = await startStack({
    modelDir: await ensureDefaultModel(DEFAULT_MODEL_DIR),
    backendPort: await freePort(),
    edgePort,
    persistTo,
    apiKey: generateApiKey(),
    backendArgs: ['--threads', threads],
    log: () => {},
  });
  return { stack, edgePort };
}

/** Every request and wait is bounded; this is the last resort if something else is not. */
function startWatchdog(stack: Stack, seconds: number): void {
  const watchdog = setTimeout(
    () => {
      console.log(`soak: still running ${seconds + 180} s after the start: stopping it (something hung)`);
      stack.kill();
      process.exit(1);
    },
    (seconds + 180) * 1000,
  );
  watchdog.unref();
}

/** One wave of the mix, then the checks that it let everything go: the backend idle again, every key's slots free. */
async function runWave(stack: Stack, wave: number, requests: number, random: () => number, idleFreeSequences: number): Promise<WaveTally> {
  const tally: WaveTally = { sent: 0, aborted: 0, refused429: 0, completed: 0, failures: [] };
  await Promise.all([
    ...Array.from({ length: requests }, (_, i) => oneRequest(stack, WIDE.key, random, tally, `wave ${wave} wide #${i}`)),
    // Twice the narrow key's concurrency at once: about half must get 429.
    ...Array.from({ length: 2 * NARROW.concurrent }, (_, i) => oneRequest(stack, NARROW.key, random, tally, `wave ${wave} narrow #${i}`)),
  ]);
  const idleAgain = (g: Map<string, number>) =>
    g.get('backend_running_sequences') === 0 &&
    g.get('backend_waiting_requests') === 0 &&
    (g.get('backend_free_sequences') ?? 0) + (g.get('backend_prefix_cache_entries') ?? 0) === idleFreeSequences;
  const settled = await settle(stack.backendUrl, stack.backendToken, idleAgain, 15_000);
  if (!settled.held) {
    const g = settled.gauges;
    tally.failures.push(
      `backend not idle 15 s after the wave: running ${g.get('backend_running_sequences')}, waiting ${g.get('backend_waiting_requests')}, free sequences ${g.get('backend_free_sequences')} + prefix snapshots ${g.get('backend_prefix_cache_entries')} (idle ${idleFreeSequences} free)`,
    );
  }
  for (const [key, name] of [
    [WIDE, 'wide'],
    [NARROW, 'narrow'],
  ] as const) {
    const leak = await slotsFree(stack, key, name);
    if (leak) tally.failures.push(`wave ${wave}: ${leak}`);
  }
  return tally;
}

interface Rss {
  backend: number[];
  edge: number[];
}

function waveRow(wave: number, tally: WaveTally, rss: Rss): string {
  const counts = [
    [wave, 4],
    [tally.sent, 4],
    [tally.completed, 4],
    [tally.aborted, 7],
    [tally.refused429, 3],
    [tally.failures.length, 8],
  ] as const;
  const megabytes = `${rss.backend.at(-1)!.toFixed(1).padStart(14)}  ${rss.edge.at(-1)!.toFixed(1).padStart(11)}`;
  return `${counts.map(([count, width]) => String(count).padStart(width)).join('  ')}  ${megabytes}`;
}

function rssSlopeLine(rss: Rss): string {
  const mb = (values: number[]) =>
    `${slope(values) >= 0 ? '+' : ''}${slope(values).toFixed(2)} MB/wave over ${values.length} waves (${values[0]?.toFixed(1)} -> ${values.at(-1)?.toFixed(1)} MB)`;
  return `RSS slope: backend ${mb(rss.backend)}; edge (wrangler + workerd) ${mb(rss.edge)}`;
}

const IDLE_SAMPLE_MS = 30_000;

/** After the waves: does anyone give memory back while nothing is asked of the stack? */
async function idleSamples(stack: Stack, edgeMemory: EdgeMemory, seconds: number): Promise<void> {
  if (seconds === 0) return;
  const start = Date.now();
  for (let next = 0; next <= seconds * 1000; next += IDLE_SAMPLE_MS) {
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, start + next - Date.now())));
    const idleFor = Math.round((Date.now() - start) / 1000);
    const rss = `backend RSS ${treeRssMb(stack.pids.backend).toFixed(1)} MB, edge RSS ${treeRssMb(stack.pids.edge).toFixed(1)} MB`;
    console.log(`${await edgeMemory.idleSample(idleFor)}; ${rss}`);
  }
}

async function main(): Promise<number> {
  const args = parseSoakArgs();
  if (!args) {
    console.log(USAGE);
    return 0;
  }
  const deadline = Date.now() + args.seconds * 1000;
  const random = prng(args.seed);
  const persistTo = mkdtempSync(path.join(tmpdir(), 'soak-edge-'));
  const { stack, edgePort } = await startSoakStack(persistTo, args.threads);
  startWatchdog(stack, args.seconds + args.idle);
  const failures: string[] = [];
  const rss: Rss = { backend: [], edge: [] };
  const edgeMemory = new EdgeMemory(stack.pids.edge, edgePort + 1000, args.heap ?? null);
  try {
    const idle = await backendGauges(stack.backendUrl, stack.backendToken);
    const idleSlotsUsed = idle.get('backend_kv_slots_used') ?? 0;
    const idleFreeSequences = idle.get('backend_free_sequences') ?? 0;
    console.log(
      `soak: ${args.waves} waves of ${args.requests} + ${2 * NARROW.concurrent} requests, model ${stack.modelInfo.modelId}, idle KV slots used ${idleSlotsUsed}, free ${idle.get('backend_kv_slots_free')}`,
    );
    console.log('wave  sent  done  aborted  429  failures  backend RSS MB  edge RSS MB');
    for (let wave = 1; wave <= args.waves && Date.now() < deadline; wave++) {
      const tally = await runWave(stack, wave, args.requests, random, idleFreeSequences);
      rss.backend.push(treeRssMb(stack.pids.backend));
      rss.edge.push(treeRssMb(stack.pids.edge));
      console.log(waveRow(wave, tally, rss));
      console.log(await edgeMemory.afterWave(wave));
      for (const failure of tally.failures) console.log(`      FAIL ${failure}`);
      failures.push(...tally.failures);
    }
    await idleSamples(stack, edgeMemory, args.idle);
    for (const line of edgeMemory.finish()) console.log(line);
  } finally {
    await stack.stop();
    rmSync(persistTo, { recursive: true, force: true });
  }
  console.log(rssSlopeLine(rss));
  console.log(failures.length === 0 ? 'soak: every check held' : `soak: ${failures.length} failed check(s)`);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(`soak failed: ${error.message}`);
    process.exit(1);
  },
);
