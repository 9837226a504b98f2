// `npm run bench:edge`: what the edge itself costs per request (auth + rate limit + template + tokenize),
// for a ~1000-token prompt, system-prompt cache miss vs hit. The worker runs in workerd (`wrangler dev
// --local`) against an instant fake backend in this process. workerd freezes clocks during CPU work, so
// the cost is measured from outside and the peers measured in the same run are subtracted:
//   auth + template + tokenize ~= POST /tokenize round trip - GET /health round trip;
//   rate limit = the admission RPC's wall time (server-timing; I/O does advance the clock);
//   whole request ~= chat round trip - GET /health round trip - direct backend round trip.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type ModelInfo, PROTOCOL_VERSION, PROTOCOL_VERSION_HEADER } from '../../shared/protocol';
import { encodeSse } from '../../shared/sse';
import { percentile } from '../../shared/stats';
import { generateKeyId, generateSecret, kvKeyForHash, sha256Hex } from '../src/auth/api-key-store';
import { kvPut, REPO_ROOT } from '../scripts/wrangler-kv';
import { getDefaultTokenizer } from '../src/tokenizer/default-tokenizer';

const USAGE = `Usage: npm run bench:edge            (BENCH_SAMPLES=300: sequential requests per measurement)
What the edge itself costs per request (auth + rate limit + template + tokenize) for a ~1000-token prompt,
system-prompt cache hit vs miss, in workerd under wrangler dev against an instant fake backend.
Prints figures; asserts nothing.`;
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 300);
const WARMUP = 40;
const MAX_MODEL_LEN = 8192;

function instantBackend(): Promise<Server> {
  const body = [
    encodeSse(JSON.stringify({ choice: 0, tokenIds: [22557] }), 'token'),
    encodeSse(JSON.stringify({ choice: 0, finishReason: 'length' }), 'finish'),
    encodeSse(JSON.stringify({ usage: { promptTokens: 1000, completionTokens: 1, cachedTokens: 0 } }), 'end'),
  ].join('');
  // The edge asks GET /v1/model before a backend's first request and refuses one without the protocol version or
  // with another vocabulary than its bundled tokenizer's (the same asset this process reads).
  const { vocabSize, bosTokenId, eosTokenId } = getDefaultTokenizer();
  const modelInfo: ModelInfo = { modelId: 'mistral-tiny-random', vocabSize, maxModelLen: MAX_MODEL_LEN, slidingWindow: null, bosTokenId, eosTokenId };
  const version = { [PROTOCOL_VERSION_HEADER]: String(PROTOCOL_VERSION) };
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/model') {
        res.writeHead(200, { 'content-type': 'application/json', ...version });
        return void res.end(JSON.stringify(modelInfo));
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', ...version });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Random lowercase words: ~1 token per 3-4 characters, and no two prompts share their words (cold tokenizer caches). */
function randomText(tokensWanted: number, seed: number): string {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) & 0x7fffffff);
  const words: string[] = [];
  for (let i = 0; i < tokensWanted / 3.6; i++) {
    const length = 3 + (next() % 7);
    words.push(Array.from({ length }, () => String.fromCharCode(97 + (next() % 26))).join(''));
  }
  return words.join(' ');
}

/**
 * A difference of medians. Below zero it is noise of the round trips subtracted (they are measured apart,
 * under whatever else the machine runs), not a negative cost: say so rather than print a negative figure.
 */
function shown(ms: number): string {
  return ms >= 0 ? `~${ms.toFixed(2)} ms` : `~0 ms (below the noise of the subtracted round trips: ${ms.toFixed(2)})`;
}

async function timeRequests(label: string, count: number, make: (i: number) => Promise<Response>): Promise<{ label: string; p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < count + WARMUP; i++) {
    const started = performance.now();
    const response = await make(i);
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${label}: HTTP ${response.status}`);
    if (i >= WARMUP) times.push(performance.now() - started);
  }
  return { label, p50: percentile(times, 50), p99: percentile(times, 99) };
}

/** A key with limits no bench reaches, stored in wrangler's local state at `state`; returns its secret. */
async function storeBenchKey(state: string): Promise<string> {
  const secret = generateSecret();
  const record = {
    keyId: generateKeyId(),
    label: 'bench',
    limits: { rpm: 1e9, tpm: 1e12, concurrent: 1000 },
    created: new Date().toISOString(),
    revoked: false,
  };
  kvPut({ binding: 'API_KEYS', remote: false, persistTo: state }, kvKeyForHash(await sha256Hex(secret)), JSON.stringify(record));
  return secret;
}

/** `wrangler dev --local` against the fake backend, its vars in an env file in `state`; returns it and its URL. */
async function startEdge(state: string, backendUrl: string): Promise<{ wrangler: ChildProcess; edge: string }> {
  const envFile = path.join(state, 'bench.env');
  writeFileSync(envFile, `BACKEND_URLS=${backendUrl}\nBACKEND_TOKEN=bench\nMAX_MODEL_LEN=${MAX_MODEL_LEN}\n`);
  const port = await freePort();
  const wrangler = spawn(
    process.execPath,
    [
      path.join(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js'),
      'dev',
      '--local',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--env-file',
      envFile,
      '--persist-to',
      state,
      '--show-interactive-dev-session=false',
      '--inspector-port',
      String(await freePort()),
      '--log-level',
      'error',
    ],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', CI: 'true' },
      stdio: 'inherit',
    },
  );
  return { wrangler, edge: `http://127.0.0.1:${port}` };
}

async function waitForHealth(edge: string): Promise<void> {
  for (let i = 0; ; i++) {
    if (i > 240) throw new Error('wrangler dev did not start');
    if (
      await fetch(`${edge}/health`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** The two requests the figures are about, with `system` as the system prompt (a repeated one hits its cache). */
function edgeRequests(edge: string, secret: string) {
  const headers = { authorization: `Bearer ${secret}`, 'content-type': 'application/json' };
  const messages = (system: string) => [
    { role: 'system', content: system },
    { role: 'user', content: 'Summarize the above in one word.' },
  ];
  return {
    headers,
    chat: (system: string) =>
      fetch(`${edge}/v1/chat/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ model: 'mistral-tiny-random', max_tokens: 1, messages: messages(system) }),
      }),
    tokenize: (system: string) => fetch(`${edge}/tokenize`, { method: 'POST', headers, body: JSON.stringify({ messages: messages(system) }) }),
  };
}

/** The rate limiter's admission RPC per chat, in ms, as the edge's server-timing header reports it. */
async function admissionTimes(chat: (system: string) => Promise<Response>, system: string): Promise<number[]> {
  const admission: number[] = [];
  for (let i = 0; i < 50; i++) {
    const response = await chat(system);
    await response.arrayBuffer();
    admission.push(Number(/ratelimit;dur=(\d+)/.exec(response.headers.get('server-timing') ?? '')?.[1] ?? NaN));
  }
  return admission;
}

type Timing = Awaited<ReturnType<typeof timeRequests>>;

/** The round trips measured as they are, then the edge's own cost as their differences (see the top of the file). */
function printFigures(results: Timing[], admission: number[], promptTokens: number): void {
  console.log(
    `\nEdge benchmark: ${SAMPLES} sequential requests each, prompt ${promptTokens} tokens (workerd via wrangler dev --local, ${process.platform}/${process.arch}).`,
  );
  for (const r of results) console.log(`  ${r.label.padEnd(42)} p50 ${r.p50.toFixed(2).padStart(7)} ms   p99 ${r.p99.toFixed(2).padStart(7)} ms`);
  console.log(`  rate-limit admission RPC (server-timing, 1 ms resolution): p50 ${percentile(admission, 50)} ms, p99 ${percentile(admission, 99)} ms`);
  const [health, direct, , tokenizeHit, tokenizeMiss, hit, miss] = results;
  const admissionP50 = percentile(admission, 50);
  const part = (r: { p50: number }) => r.p50 - health.p50;
  console.log(`  => auth + template + tokenize (p50 /tokenize - p50 health): hit ${shown(part(tokenizeHit))}, miss ${shown(part(tokenizeMiss))}`);
  console.log(
    `  => + rate-limit admission p50 ${admissionP50} ms: edge work hit ${shown(part(tokenizeHit) + admissionP50)}, miss ${shown(part(tokenizeMiss) + admissionP50)}`,
  );
  const proxied = (r: { p50: number }) => r.p50 - health.p50 - direct.p50;
  console.log(`  => whole chat request incl. proxying (p50 chat - p50 health - p50 backend hop): hit ${shown(proxied(hit))}, miss ${shown(proxied(miss))}`);
}

async function main(): Promise<void> {
  if (parseArgs({ options: { help: { type: 'boolean', short: 'h' } }, strict: true }).values.help) {
    console.log(USAGE);
    return;
  }
  const backend = await instantBackend();
  const backendUrl = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
  const state = mkdtempSync(path.join(tmpdir(), 'bench-edge-'));
  const secret = await storeBenchKey(state);
  const { wrangler, edge } = await startEdge(state, backendUrl);
  try {
    await waitForHealth(edge);
    const { headers, chat, tokenize } = edgeRequests(edge, secret);
    const hitSystem = randomText(1000, 1);
    const tokenized = (await (await tokenize(hitSystem)).json()) as { count: number };
    const admission = await admissionTimes(chat, hitSystem);
    const results = [
      await timeRequests('GET /health (HTTP + wrangler overhead)', SAMPLES, () => fetch(`${edge}/health`)),
      await timeRequests('fake backend direct (backend hop)', SAMPLES, () =>
        fetch(`${backendUrl}/v1/generate`, { method: 'POST', body: JSON.stringify({ tokenIds: new Array(1000).fill(1000) }) }),
      ),
      await timeRequests('GET /v1/models (auth only)', SAMPLES, () => fetch(`${edge}/v1/models`, { headers })),
      await timeRequests('/tokenize, cache HIT (auth+template+ids)', SAMPLES, () => tokenize(hitSystem)),
      await timeRequests('/tokenize, cache MISS', SAMPLES, (i) => tokenize(randomText(1000, 5000 + i))),
      await timeRequests('chat, system prompt cache HIT', SAMPLES, () => chat(hitSystem)),
      await timeRequests('chat, system prompt cache MISS', SAMPLES, (i) => chat(randomText(1000, 1000 + i))),
    ];
    printFigures(results, admission, tokenized.count);
  } finally {
    wrangler.kill('SIGTERM');
    backend.close();
    rmSync(state, { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  console.error(`bench-edge failed: ${error.message}`);
  process.exit(1);
});
