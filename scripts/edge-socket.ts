// Our worker as deployed, without wrangler: the `wrangler deploy --dry-run` bundle served by workerd (through
// miniflare) on a socket of its own, so neither wrangler's ProxyWorker nor miniflare's entry worker is in the
// path, only workerd's HTTP server. Bindings point at a running stack's backend; KV and the rate limiter's
// Durable Object are in-memory, so only the stack's dev key is known there.

import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Miniflare } from 'miniflare';
import { REPO_ROOT, type Stack } from './stack';

/** wrangler.toml's compatibility settings (enable_request_signal: a disconnect aborts request.signal). */
export const SOCKET_RUNTIME = { compatibilityDate: '2026-04-01', compatibilityFlags: ['enable_request_signal'] };

export async function startEdgeOnSocket(stack: Stack, port: number): Promise<Miniflare> {
  const outdir = mkdtempSync(path.join(tmpdir(), 'edge-socket-bundle-'));
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'deploy', '--dry-run', '--outdir', outdir], {
    cwd: REPO_ROOT,
    stdio: 'ignore',
  });
  const edge = new Miniflare({
    ...SOCKET_RUNTIME,
    unsafeDirectSockets: [{ host: '127.0.0.1', port }],
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
  await edge.ready;
  return edge;
}
