// Do dropped streams reach the backend as aborts? Drops rounds of concurrent streaming chats (at their first
// body bytes, or after --after bytes) and reads who noticed: the backend's outcome counters and the edge's
// stream ends. Paths: through `wrangler dev` (its proxy), to wrangler's user workerd directly, or to workerd
// serving the deploy bundle on a socket of its own (no wrangler, no miniflare entry worker). On that socket,
// --workers interleaves ours with small probe workers (drop-probe-workers.ts), each one step closer to ours,
// round by round, so the machine's load falls on all of them alike.

import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Miniflare } from 'miniflare';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../../gpu-backend/src/model/checkpoint/default-model';
import { backendGauges, settle } from '../../scripts/soak-probes';
import { SOCKET_RUNTIME, startEdgeOnSocket } from '../../scripts/edge-socket';
import { freePort, generateApiKey, startStack } from '../../scripts/stack';
import { PROBE_VARIANTS, PROBE_WORKER } from './drop-probe-workers';

const USAGE = `Usage: npm run bench:drops [-- --path wrangler|workerd|socket] [--workers edge,gen,...] [--rounds N]
                           [--concurrency N] [--max-tokens N] [--after BYTES]

Starts the local stack, drops streams, prints one JSON line per worker: what the client did, and how many
streams the worker, its upstream and the backend saw end by a drop (abort / client_closed / cancelled / cut) or
ran to their end (length / completed / full).
  --path wrangler   through wrangler dev's proxy, as npm start serves (default)
  --path workerd    to the workerd that runs the worker under wrangler dev, skipping its proxy
  --path socket     to workerd serving the \`wrangler deploy --dry-run\` bundle on its own socket
  --workers LIST    (socket only) comma-separated, interleaved per round: edge (ours, default) and the probe
                    workers, ${Object.keys(PROBE_VARIANTS).join(', ')}:
${Object.entries(PROBE_VARIANTS)
  .map(([name, what]) => `                      ${name}: ${what}`)
  .join('\n')}
  --after BYTES     drop after this many body bytes (default 1: the first bytes)`;

const { values } = parseArgs({
  options: {
    path: { type: 'string', default: 'wrangler' },
    workers: { type: 'string', default: 'edge' },
    rounds: { type: 'string', default: '15' },
    concurrency: { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '400' },
    after: { type: 'string', default: '1' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!['wrangler', 'workerd', 'socket'].includes(values.path)) throw new Error(`--path ${values.path}: expected wrangler, workerd or socket`);
const WORKERS = values.workers.split(',');
for (const worker of WORKERS) {
  if (worker !== 'edge' && !(worker in PROBE_VARIANTS)) throw new Error(`--workers: unknown worker "${worker}"`);
}
if (values.path !== 'socket' && WORKERS.some((worker) => worker !== 'edge')) throw new Error('--workers other than edge need --path socket');
/** Events the local SSE server sends per stream, one every SSE_INTERVAL_MS: about a 400-token stream of the backend's. */
const SSE_EVENTS = 400;
const SSE_INTERVAL_MS = 3;

/** Resolves once the response's first `after` body bytes arrived and the socket was destroyed (or it ended). */
function dropOne(url: URL, apiKey: string, body: string, after: number): Promise<string> {
  return new Promise((resolve) => {
    const request = http.request(url, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' } });
    request.on('response', (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        response.on('end', () => resolve(`status ${response.statusCode}`));
        return;
      }
      let seen = 0;
      response.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen < after) return;
        request.destroy();
        resolve('dropped');
      });
      response.on('end', () => resolve('ran to its end'));
    });
    request.on('error', () => resolve('dropped'));
    request.end(body);
  });
}

/** The port of wrangler's user workerd: the one listener besides the proxy's whose /health answers. */
async function userWorkerdPort(proxyPort: number): Promise<number> {
  const listeners = execFileSync('ss', ['-ltnp'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes('workerd'));
  for (const line of listeners) {
    const port = Number(/127\.0\.0\.1:(\d+)/.exec(line)?.[1]);
    if (!port || port === proxyPort) continue;
    if (
      await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return port;
  }
  throw new Error("no workerd listener besides wrangler's proxy answers /health");
}

/** Upstream of the probe workers: SSE_EVENTS token events per stream, counted by path as sent in full or cut. */
async function sseServer(): Promise<{ url: string; ends: Record<string, { full: number; cut: number }>; close(): void }> {
  const ends: Record<string, { full: number; cut: number }> = {};
  const server = http.createServer((request, response) => {
    const tally = (ends[request.url ?? ''] ??= { full: 0, cut: 0 });
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    let sent = 0;
    response.on('close', () => {
      if (sent < SSE_EVENTS) tally.cut++;
    });
    const tick = () => {
      if (response.destroyed) return;
      if (sent === SSE_EVENTS) {
        tally.full++;
        response.end();
        return;
      }
      response.write(`event: token\ndata: {"choice":0,"tokenIds":[${sent++}]}\n\n`);
      setTimeout(tick, SSE_INTERVAL_MS);
    };
    tick();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, ends, close: () => server.close() };
}

async function edgeEnds(port: number, apiKey: string): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${apiKey}` } })).text();
  const ends: Record<string, number> = {};
  for (const [, end, count] of text.matchAll(/^edge_streams_total\{end="(\w+)"\} (\d+)$/gm)) ends[end] = Number(count);
  return ends;
}

type ProbeEnds = Record<string, { started: number; cancelled: number; completed: number; signal: number }>;

/** The probe workers' stream ends, once every started stream has ended (or after `ms`). */
async function probeEnds(port: number, ms: number): Promise<{ ends: ProbeEnds; settled: boolean }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ends = (await (await fetch(`http://127.0.0.1:${port}/ends`)).json()) as ProbeEnds;
    const settled = Object.values(ends).every((e) => e.started === e.cancelled + e.completed + e.signal);
    if (settled || Date.now() > deadline) return { ends, settled };
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const edgePort = await freePort();
const stack = await startStack({
  modelDir: await ensureDefaultModel(DEFAULT_MODEL_DIR),
  backendPort: await freePort(),
  edgePort,
  persistTo: mkdtempSync(path.join(tmpdir(), `drop-probe-${edgePort}-`)),
  apiKey: generateApiKey(),
  inspectorPort: 0,
  backendArgs: ['--threads', '1'],
  log: () => {},
});
const sockets: Miniflare[] = [];
const upstream = WORKERS.some((worker) => worker !== 'edge') ? await sseServer() : null;
try {
  let port = edgePort;
  if (values.path === 'workerd') port = await userWorkerdPort(edgePort);
  if (values.path === 'socket' && WORKERS.includes('edge')) {
    port = await freePort();
    sockets.push(await startEdgeOnSocket(stack, port));
  }
  const probePort = await freePort();
  if (upstream) {
    sockets.push(
      new Miniflare({
        ...SOCKET_RUNTIME,
        unsafeDirectSockets: [{ host: '127.0.0.1', port: probePort }],
        modules: true,
        script: PROBE_WORKER,
        bindings: { SSE_URL: upstream.url },
      }),
    );
  }
  await Promise.all(sockets.map((socket) => socket.ready));
  const urlOf = (worker: string) => new URL(worker === 'edge' ? `http://127.0.0.1:${port}/v1/chat/completions` : `http://127.0.0.1:${probePort}/${worker}`);
  const body = JSON.stringify({
    model: stack.modelInfo.modelId,
    stream: true,
    max_tokens: Number(values['max-tokens']),
    temperature: 1,
    messages: [{ role: 'user', content: 'Tell me a long story.' }],
  });
  const before = await backendGauges(stack.backendUrl, stack.backendToken);
  const client: Record<string, Record<string, number>> = {};
  for (let round = 0; round < Number(values.rounds); round++) {
    // Each round starts one worker later, so no worker always runs right after the same one.
    for (let i = 0; i < WORKERS.length; i++) {
      const worker = WORKERS[(round + i) % WORKERS.length]!;
      const ends = await Promise.all(
        Array.from({ length: Number(values.concurrency) }, () => dropOne(urlOf(worker), stack.apiKey, body, Number(values.after))),
      );
      for (const end of ends) (client[worker] ??= {})[end] = (client[worker]?.[end] ?? 0) + 1;
    }
  }
  const { gauges, held } = await settle(stack.backendUrl, stack.backendToken, (g) => g.get('backend_running_sequences') === 0, 120_000);
  const delta = (outcome: string) =>
    (gauges.get(`backend_requests_total{outcome="${outcome}"}`) ?? 0) - (before.get(`backend_requests_total{outcome="${outcome}"}`) ?? 0);
  const probes = upstream ? await probeEnds(probePort, 60_000) : null;
  const load = loadavg().map((l) => Number(l.toFixed(1)));
  for (const worker of WORKERS) {
    const common = { path: values.path, worker, after: Number(values.after), rounds: Number(values.rounds), load, client: client[worker] };
    if (worker === 'edge') {
      const backend = { abort: delta('abort'), length: delta('length'), stop: delta('stop'), settled: held };
      console.log(JSON.stringify({ ...common, edge: await edgeEnds(port, stack.apiKey), backend }));
    } else {
      console.log(JSON.stringify({ ...common, probe: probes?.ends[worker], settled: probes?.settled, upstream: upstream?.ends[`/${worker}`] }));
    }
  }
} finally {
  await Promise.all(sockets.map((socket) => socket.dispose()));
  upstream?.close();
  await stack.stop();
}
