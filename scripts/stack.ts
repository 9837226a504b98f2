// Starts the whole local stack: the Node backend (real ONNX session) and the edge worker under
// `wrangler dev` (workerd, local mode). Used by `npm start` and by the end-to-end test.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelInfo } from '../shared/protocol';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface StackOptions {
  modelDir: string;
  backendPort: number;
  edgePort: number;
  apiKey: string;
  /** wrangler's local state (KV, Durable Objects); default `.wrangler/state`, where `npm run keys` writes. */
  persistTo?: string;
  /** Extra backend flags, e.g. ['--threads', '1']. */
  backendArgs?: string[];
  /** Extra worker vars for the edge (e.g. BACKEND_HEADERS_TIMEOUT_MS), written to its env file. */
  edgeVars?: Record<string, string>;
  /** Where child output goes; defaults to this process's stderr with a prefix. */
  log?: (line: string) => void;
}

export interface Stack {
  backendUrl: string;
  edgeUrl: string;
  apiKey: string;
  /** Shared secret between edge and backend, fresh for every stack. */
  backendToken: string;
  modelInfo: ModelInfo;
  /** The backend's process id (failure tests stop it with SIGSTOP, or kill it). */
  backendPid: number;
  /** Stops the backend only (the edge keeps running): for failure tests. */
  stopBackend(): Promise<void>;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 180_000;

function pipeLines(child: ChildProcess, prefix: string, log: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    let pending = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) log(`${prefix} ${line}`);
    });
  }
}

async function waitFor(url: string, child: ChildProcess, what: string, headers: Record<string, string> = {}): Promise<Response> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(2_000) });
      if (res.ok) return res;
      lastError = `HTTP ${res.status}`;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what} was not ready at ${url} after ${READY_TIMEOUT_MS / 1000} s (${lastError})`);
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(killTimer);
      resolve();
    });
    child.kill(signal);
  });
}

export function generateApiKey(): string {
  return `sk-local-${randomBytes(18).toString('base64url')}`;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const log = options.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const backendToken = randomBytes(24).toString('base64url');
  const backendUrl = `http://127.0.0.1:${options.backendPort}`;
  const edgeUrl = `http://127.0.0.1:${options.edgePort}`;
  const children: ChildProcess[] = [];
  let stopping = false;
  const stop = async () => {
    stopping = true;
    // wrangler shuts down cleanly on SIGINT (as on Ctrl-C); on SIGTERM its bundler dumps goroutine stacks.
    await Promise.all(children.map((child, index) => stopChild(child, index === 1 ? 'SIGINT' : 'SIGTERM')));
  };
  const childLog = (line: string) => {
    if (!stopping || line.startsWith('[backend]')) log(line);
  };

  try {
    const backend = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(REPO_ROOT, 'gpu-backend/src/main.ts'), '--model', options.modelDir,
        '--host', '127.0.0.1', '--port', String(options.backendPort), ...(options.backendArgs ?? [])],
      { cwd: REPO_ROOT, env: { ...process.env, BACKEND_TOKEN: backendToken }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(backend);
    pipeLines(backend, '[backend]', childLog);
    await waitFor(`${backendUrl}/ready`, backend, 'backend');
    const infoResponse = await fetch(`${backendUrl}/v1/model`, { headers: { authorization: `Bearer ${backendToken}` } });
    const modelInfo = (await infoResponse.json()) as ModelInfo;

    // Vars for the local worker go through an env file, so secrets stay off the command line.
    const varsDir = path.join(REPO_ROOT, '.wrangler', 'stack');
    mkdirSync(varsDir, { recursive: true });
    const envFile = path.join(varsDir, `edge-${options.edgePort}.env`);
    writeFileSync(
      envFile,
      [
        `BACKEND_URLS=${backendUrl}`,
        `BACKEND_TOKEN=${backendToken}`,
        `DEV_API_KEY=${options.apiKey}`,
        `MODEL_ID=${modelInfo.modelId}`,
        `MAX_MODEL_LEN=${modelInfo.maxModelLen}`,
        ...Object.entries(options.edgeVars ?? {}).map(([name, value]) => `${name}=${value}`),
      ].join('\n') + '\n',
      { mode: 0o600 },
    );
    const wrangler = path.join(REPO_ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
    if (!existsSync(wrangler)) throw new Error('wrangler is not installed: run `npm ci` first');
    const edge = spawn(
      process.execPath,
      [wrangler, 'dev', '--local', '--ip', '127.0.0.1', '--port', String(options.edgePort), '--env-file', envFile,
        '--persist-to', options.persistTo ?? path.join(REPO_ROOT, '.wrangler', 'state'), '--show-interactive-dev-session=false',
        '--inspector-port', String(options.edgePort + 1000), '--log-level', 'warn'],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', CI: 'true' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(edge);
    pipeLines(edge, '[edge]', childLog);
    await waitFor(`${edgeUrl}/health`, edge, 'edge worker');
    return { backendUrl, edgeUrl, apiKey: options.apiKey, backendToken, modelInfo, backendPid: backend.pid!, stopBackend: () => stopChild(backend), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
