// Starts the whole local stack: the Node backend (real ONNX session) and the edge worker under
// `wrangler dev` (workerd, local mode). Used by `npm start` and by the end-to-end test.

import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyId, generateSecret, kvKeyForHash, sha256Hex, type RateLimits } from '../edge/src/auth/api-key-store';
import { kvPut } from '../edge/scripts/wrangler-kv';
import { writeEdgeWranglerConfig } from './edge-wrangler-config';
import { type ChildCommand, StackProcesses } from './stack-processes';
import type { ModelInfo } from '../shared/protocol';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface StackOptions {
  modelDir: string;
  backendPort: number;
  edgePort: number;
  apiKey: string;
  /** wrangler's local state (KV, Durable Objects); default `.wrangler/state`, where `npm run keys` writes. */
  persistTo?: string;
  /** wrangler's inspector (DevTools) port; default edgePort + 1000. Tests pass 0 (any free port): a fixed
   *  offset from a random free port can land on a port in use, and wrangler then exits with code 1. */
  inspectorPort?: number;
  /** Extra backend flags, e.g. ['--threads', '1']. */
  backendArgs?: string[];
  /** Extra worker vars for the edge (e.g. BACKEND_HEADERS_TIMEOUT_MS), written to its env file. */
  edgeVars?: Record<string, string>;
  /** Where child output goes; defaults to this process's stderr with a prefix. */
  log?: (line: string) => void;
  /** Shared secret between edge and backend; default: a fresh random one. */
  backendToken?: string;
  /**
   * Runs the edge in a process group of its own, so a terminal's Ctrl-C reaches only the caller and
   * stop() can let the backend drain before the edge goes (`npm start`). The caller must stop or kill().
   */
  edgeOwnProcessGroup?: boolean;
  /** Called when a child exits on its own after the stack is up (not through stop() or stopBackend()). */
  onUnexpectedExit?: (which: 'backend' | 'edge', code: number | null, signal: NodeJS.Signals | null) => void;
  /**
   * The tokenizer asset the edge bundles (a build-tokenizer output) instead of edge/generated/tokenizer.json, e.g.
   * the built-in v3 one: this stack then leaves that shared file, and any other stack using it, alone.
   */
  tokenizerAsset?: string;
  /** Restart a backend that dies on its own (npm start); without it a death goes to onUnexpectedExit. */
  restartBackend?: BackendRestartPolicy;
}

/**
 * Restarts of a backend that died on its own: waits double from initialMs up to maxMs; a run that stayed up
 * stableMs resets them; after maxAttempts restarts in a row that did not stay up, onUnexpectedExit is called.
 */
export interface BackendRestartPolicy {
  initialMs: number;
  maxMs: number;
  stableMs: number;
  maxAttempts: number;
}

export interface Stack {
  backendUrl: string;
  edgeUrl: string;
  apiKey: string;
  /** Shared secret between edge and backend, fresh for every stack. */
  backendToken: string;
  modelInfo: ModelInfo;
  /** Process ids of the backend and of the edge's `wrangler dev`. */
  pids: { backend: number; edge: number };
  /** Stops the backend only (the edge keeps running): for failure tests. */
  stopBackend(): Promise<void>;
  /** The backend first (it drains open streams), then the edge, so clients get their streams' ends. */
  stop(): Promise<void>;
  /** SIGKILL to both at once, synchronous: a second Ctrl-C, or the caller's exit. */
  kill(): void;
}

/** Where the per-edge env files and wrangler configs go (the vars hold secrets: mode 0600). */
const STACK_DIR = path.join(REPO_ROOT, '.wrangler', 'stack');

/** Refuses a port someone already listens on (another `npm start`, a stray backend) before anything starts. */
export async function assertPortFree(port: number, what: string): Promise<void> {
  const inUse = await new Promise<boolean>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' || error.code === 'EACCES' ? resolve(true) : reject(error)));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(false)));
  });
  if (inUse)
    throw new PortInUseError(
      `port ${port} (${what}) is already in use on 127.0.0.1: is another \`npm start\` or backend running? Stop it, or choose other ports (BACKEND_PORT, EDGE_PORT).`,
    );
}

export class PortInUseError extends Error {}

/** A port free on 127.0.0.1 right now (the OS picks it). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', resolve);
  });
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** A free port p whose p + 1000 (the edge's inspector) is free too: what an edge port needs. */
export async function freeEdgePort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (
      port + 1000 <= 65535 &&
      (await assertPortFree(port + 1000, 'inspector').then(
        () => true,
        () => false,
      ))
    )
      return port;
  }
}

export function generateApiKey(): string {
  return `sk-local-${randomBytes(18).toString('base64url')}`;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const backendToken = options.backendToken ?? randomBytes(24).toString('base64url');
  const backendUrl = `http://127.0.0.1:${options.backendPort}`;
  const edgeUrl = `http://127.0.0.1:${options.edgePort}`;
  const inspectorPort = options.inspectorPort ?? options.edgePort + 1000;
  await assertStackPortsFree(options, inspectorPort);
  const processes = new StackProcesses({
    cwd: REPO_ROOT,
    backendUrl,
    backend: backendCommand(options, backendToken),
    drainMs: drainSecondsOf(options.backendArgs ?? []) * 1000,
    log,
    restartBackend: options.restartBackend,
    onUnexpectedExit: options.onUnexpectedExit,
  });
  try {
    const backend = await processes.startBackend();
    const modelInfo = await fetchModelInfo(backendUrl, backendToken);
    const envFile = writeEdgeVars(options, backendUrl, backendToken, modelInfo);
    const edge = await processes.startEdge(await edgeCommand(options, envFile, inspectorPort), `${edgeUrl}/health`);
    processes.markStarted();
    return {
      backendUrl,
      edgeUrl,
      apiKey: options.apiKey,
      backendToken,
      modelInfo,
      pids: { backend: backend.pid!, edge: edge.pid! },
      stopBackend: () => processes.stopBackend(),
      stop: () => processes.stop(),
      kill: () => processes.kill(),
    };
  } catch (error) {
    await processes.stop();
    throw error;
  }
}

async function assertStackPortsFree(options: StackOptions, inspectorPort: number): Promise<void> {
  await assertPortFree(options.backendPort, 'backend');
  await assertPortFree(options.edgePort, 'edge');
  if (inspectorPort !== 0) await assertPortFree(inspectorPort, 'edge inspector, edge port + 1000');
}

/** The backend's --drain-seconds (default 30): how long stop() lets it finish open streams. */
function drainSecondsOf(backendArgs: string[]): number {
  const index = backendArgs.indexOf('--drain-seconds');
  const value = index >= 0 ? Number(backendArgs[index + 1]) : 30;
  return Number.isFinite(value) && value >= 0 ? value : 30;
}

function backendCommand(options: StackOptions, backendToken: string): ChildCommand {
  const main = path.join(REPO_ROOT, 'gpu-backend/src/main.ts');
  const listen = ['--host', '127.0.0.1', '--port', String(options.backendPort)];
  return { args: ['--import', 'tsx', main, '--model', options.modelDir, ...listen, ...(options.backendArgs ?? [])], env: { BACKEND_TOKEN: backendToken } };
}

async function fetchModelInfo(backendUrl: string, backendToken: string): Promise<ModelInfo> {
  const response = await fetch(`${backendUrl}/v1/model`, { headers: { authorization: `Bearer ${backendToken}` } });
  if (!response.ok)
    throw new Error(`the backend at ${backendUrl} refused its model info (HTTP ${response.status}): is it another process than the one just started?`);
  return (await response.json()) as ModelInfo;
}

/** Vars for the local worker go through an env file, so secrets stay off the command line; returns its path. */
function writeEdgeVars(options: StackOptions, backendUrl: string, backendToken: string, modelInfo: ModelInfo): string {
  mkdirSync(STACK_DIR, { recursive: true });
  const envFile = path.join(STACK_DIR, `edge-${options.edgePort}.env`);
  const vars = {
    BACKEND_URLS: backendUrl,
    BACKEND_TOKEN: backendToken,
    DEV_API_KEY: options.apiKey,
    MODEL_ID: modelInfo.modelId,
    MAX_MODEL_LEN: String(modelInfo.maxModelLen),
  };
  const lines = [...Object.entries(vars), ...Object.entries(options.edgeVars ?? {})].map(([name, value]) => `${name}=${value}`);
  writeFileSync(envFile, `${lines.join('\n')}\n`, { mode: 0o600 });
  return envFile;
}

async function edgeCommand(options: StackOptions, envFile: string, inspectorPort: number): Promise<ChildCommand> {
  const wrangler = path.join(REPO_ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js');
  if (!existsSync(wrangler)) throw new Error('wrangler is not installed: run `npm ci` first');
  const config = options.tokenizerAsset
    ? ['--config', await writeEdgeWranglerConfig(path.join(STACK_DIR, `edge-${options.edgePort}.wrangler.json`), options.tokenizerAsset)]
    : [];
  const args = [
    wrangler,
    'dev',
    ...config,
    '--local',
    '--ip',
    '127.0.0.1',
    '--port',
    String(options.edgePort),
    '--env-file',
    envFile,
    '--persist-to',
    options.persistTo ?? path.join(REPO_ROOT, '.wrangler', 'state'),
    '--show-interactive-dev-session=false',
    '--inspector-port',
    String(inspectorPort),
    '--log-level',
    'warn',
  ];
  const env = { CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', CI: 'true' };
  return { args, env, detached: options.edgeOwnProcessGroup ?? false };
}

/**
 * An API key stored in wrangler's local state at `persistTo` (as `npm run keys -- create` stores one), for the
 * soak, the load bench and the tests that need limits other than the dev key's. Put it before the edge starts.
 */
export async function createLocalKey(persistTo: string, label: string, limits: RateLimits): Promise<{ secret: string; keyId: string }> {
  const secret = generateSecret();
  const keyId = generateKeyId();
  const record = { keyId, label, limits, created: new Date().toISOString(), revoked: false };
  kvPut({ binding: 'API_KEYS', remote: false, persistTo }, kvKeyForHash(await sha256Hex(secret)), JSON.stringify(record));
  return { secret, keyId };
}
