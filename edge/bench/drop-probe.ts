// Do dropped streams reach the backend as aborts? Drops rounds of concurrent streaming chats (at their first
// body bytes, or after --after bytes) and reads who noticed: the backend's outcome counters and the edge's
// stream ends. Paths: through `wrangler dev` (its proxy), to wrangler's user workerd directly, or to workerd
// serving the deploy bundle on a socket of its own (no wrangler, no miniflare entry worker). --minimal serves
// a ten-line streaming worker instead of ours on that last path, to tell workerd's behaviour from ours.

import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Miniflare } from 'miniflare';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../../gpu-backend/src/model/checkpoint/default-model';
import { backendGauges, settle } from '../../scripts/soak-probes';
import { REPO_ROOT, freePort, generateApiKey, startStack, type Stack } from '../../scripts/stack';

const USAGE = `Usage: npm run bench:drops [-- --path wrangler|workerd|socket] [--minimal] [--rounds N] [--concurrency N]
                           [--max-tokens N] [--after BYTES]

Starts the local stack, drops streams, prints one JSON line: what the client did, and how many streams
the edge and the backend saw end by a drop (abort / client_closed) or ran to their end (length / completed).
  --path wrangler   through wrangler dev's proxy, as npm start serves (default)
  --path workerd    to the workerd that runs the worker under wrangler dev, skipping its proxy
  --path socket     to workerd serving the \`wrangler deploy --dry-run\` bundle on its own socket
  --minimal         (socket only) a minimal worker that streams 400 chunks instead of the edge
  --after BYTES     drop after this many body bytes (default 1: the first bytes)`;

const { values } = parseArgs({
  options: {
    path: { type: 'string', default: 'wrangler' },
    minimal: { type: 'boolean', default: false },
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

const MINIMAL_WORKER = `
const ends = { started: 0, cancelled: 0, completed: 0 };
export default {
  fetch(request, env, ctx) {
    if (new URL(request.url).pathname === '/ends') return Response.json(ends);
    ends.started++;
    let done = false;
    const chunk = new TextEncoder().encode('data: ' + 'x'.repeat(150) + '\\n\\n');
    const body = new ReadableStream({
      start(controller) {
        ctx.waitUntil((async () => {
          for (let i = 0; i < 400 && !done; i++) {
            await new Promise((resolve) => setTimeout(resolve, 0));
            try { controller.enqueue(chunk); } catch { if (!done) ends.cancelled++; done = true; }
          }
          if (!done) { done = true; controller.close(); ends.completed++; }
        })());
      },
      cancel() { if (!done) { done = true; ends.cancelled++; } },
    });
    return new Response(body, { headers: { 'content-type': 'text/event-stream' } });
  },
};`;

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

async function ownSocket(stack: Stack, port: number): Promise<Miniflare> {
  const common = { compatibilityDate: '2026-04-01', compatibilityFlags: ['enable_request_signal'], unsafeDirectSockets: [{ host: '127.0.0.1', port }] };
  if (values.minimal) return new Miniflare({ ...common, modules: true, script: MINIMAL_WORKER });
  const outdir = mkdtempSync(path.join(tmpdir(), 'drop-probe-bundle-'));
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'deploy', '--dry-run', '--outdir', outdir], {
    cwd: REPO_ROOT,
    stdio: 'ignore',
  });
  return new Miniflare({
    ...common,
    modules: true,
    scriptPath: path.join(outdir, 'index.js'),
    modulesRoot: outdir,
    kvNamespaces: ['API_KEYS', 'SYSTEM_PROMPTS'],
    durableObjects: { RATE_LIMITER: { className: 'RateLimiter', useSQLite: true } },
    bindings: {
      BACKEND_URLS: stack.backendUrl,
      BACKEND_TOKEN: stack.backendToken,
      DEV_API_KEY: stack.apiKey,
      MODEL_ID: stack.modelInfo.modelId,
      MAX_MODEL_LEN: String(stack.modelInfo.maxModelLen),
    },
  });
}

async function edgeEnds(port: number, apiKey: string): Promise<Record<string, number>> {
  if (values.minimal) return (await (await fetch(`http://127.0.0.1:${port}/ends`)).json()) as Record<string, number>;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${apiKey}` } })).text();
  const ends: Record<string, number> = {};
  for (const [, end, count] of text.matchAll(/^edge_streams_total\{end="(\w+)"\} (\d+)$/gm)) ends[end] = Number(count);
  return ends;
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
let socket: Miniflare | undefined;
try {
  let port = edgePort;
  if (values.path === 'workerd') port = await userWorkerdPort(edgePort);
  if (values.path === 'socket') {
    port = await freePort();
    socket = await ownSocket(stack, port);
    await socket.ready;
  }
  const url = new URL(`http://127.0.0.1:${port}/v1/chat/completions`);
  const body = JSON.stringify({
    model: stack.modelInfo.modelId,
    stream: true,
    max_tokens: Number(values['max-tokens']),
    temperature: 1,
    messages: [{ role: 'user', content: 'Tell me a long story.' }],
  });
  const before = await backendGauges(stack.backendUrl, stack.backendToken);
  const client: Record<string, number> = {};
  for (let round = 0; round < Number(values.rounds); round++) {
    const ends = await Promise.all(Array.from({ length: Number(values.concurrency) }, () => dropOne(url, stack.apiKey, body, Number(values.after))));
    for (const end of ends) client[end] = (client[end] ?? 0) + 1;
  }
  const { gauges, held } = await settle(stack.backendUrl, stack.backendToken, (g) => g.get('backend_running_sequences') === 0, 120_000);
  const delta = (outcome: string) =>
    (gauges.get(`backend_requests_total{outcome="${outcome}"}`) ?? 0) - (before.get(`backend_requests_total{outcome="${outcome}"}`) ?? 0);
  const backend = values.minimal ? null : { abort: delta('abort'), length: delta('length'), stop: delta('stop'), settled: held };
  console.log(
    JSON.stringify({
      path: values.path,
      worker: values.minimal ? 'minimal' : 'edge',
      after: Number(values.after),
      client,
      edge: await edgeEnds(port, stack.apiKey),
      backend,
    }),
  );
} finally {
  await socket?.dispose();
  await stack.stop();
}
