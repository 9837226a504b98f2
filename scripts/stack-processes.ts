// The local stack's two child processes (backend, edge): spawns them with their output prefixed into one log,
// waits until each answers, restarts a backend that dies on its own (when asked) and stops them in the order
// that lets open streams end.

import { spawn, type ChildProcess } from 'node:child_process';
import type { BackendRestartPolicy, StackOptions } from './stack';

const READY_TIMEOUT_MS = 180_000;
/**
 * After the backend has drained and exited, the edge has received every stream's last event; this margin
 * lets workerd write them on to the clients before wrangler tears it down (it does not drain on SIGINT).
 */
const EDGE_FLUSH_MS = 1_000;

/** One child: node with these arguments, and the variables it gets on top of this process's environment. */
export interface ChildCommand {
  args: string[];
  env: Record<string, string>;
  /** A process group of its own (see StackOptions.edgeOwnProcessGroup). */
  detached?: boolean;
}

interface StackProcessesOptions extends Pick<StackOptions, 'restartBackend' | 'onUnexpectedExit'> {
  cwd: string;
  backendUrl: string;
  /** Spawned again, environment included, for every restart. */
  backend: ChildCommand;
  /** How long stopBackend() lets the backend drain before it is killed, less a 10 s margin. */
  drainMs: number;
  log: (line: string) => void;
}

type Which = 'backend' | 'edge';

export class StackProcesses {
  private backend: ChildProcess | undefined;
  private edge: ChildProcess | undefined;
  /** stop() or kill() was called: exits are expected, edge output is dropped. */
  private stopping = false;
  /** stopBackend() was called: the backend's exit is expected. */
  private backendStopping = false;
  /** Both were ready once: an exit from here on is a death (restart or onUnexpectedExit), not a failed start. */
  private started = false;
  private restarts = { attempt: 0, readyAt: 0 };

  constructor(private readonly options: StackProcessesOptions) {}

  /** Spawns the backend and resolves once its /ready answers. */
  async startBackend(): Promise<ChildProcess> {
    const backend = this.spawnBackend();
    await waitFor(`${this.options.backendUrl}/ready`, backend, 'backend');
    this.restarts.readyAt = Date.now();
    return backend;
  }

  /** Spawns the edge and resolves once `healthUrl` answers. */
  async startEdge(command: ChildCommand, healthUrl: string): Promise<ChildProcess> {
    const edge = this.spawnChild(command, 'edge');
    this.edge = edge;
    await waitFor(healthUrl, edge, 'edge worker');
    return edge;
  }

  markStarted(): void {
    this.started = true;
  }

  stopBackend(): Promise<void> {
    this.backendStopping = true;
    return this.backend ? stopChild(this.backend, 'SIGTERM', this.options.drainMs + 10_000) : Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const { backend, edge } = this;
    const backendWasUp = backend !== undefined && isRunning(backend);
    await this.stopBackend();
    if (!edge) return;
    if (backendWasUp && this.started) await new Promise((resolve) => setTimeout(resolve, EDGE_FLUSH_MS));
    // wrangler shuts down cleanly on SIGINT (as on Ctrl-C); on SIGTERM its bundler dumps goroutine stacks.
    await stopChild(edge, 'SIGINT');
  }

  kill(): void {
    this.stopping = true;
    for (const child of [this.backend, this.edge]) if (child && isRunning(child)) child.kill('SIGKILL');
  }

  private spawnBackend(): ChildProcess {
    this.backend = this.spawnChild(this.options.backend, 'backend');
    return this.backend;
  }

  private spawnChild(command: ChildCommand, which: Which): ChildProcess {
    const child = spawn(process.execPath, command.args, {
      cwd: this.options.cwd,
      detached: command.detached ?? false,
      env: { ...process.env, ...command.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.once('exit', (code, signal) => this.onExit(which, code, signal));
    pipeLines(child, `[${which}]`, (line) => {
      if (!this.stopping || line.startsWith('[backend]')) this.options.log(line);
    });
    return child;
  }

  private onExit(which: Which, code: number | null, signal: NodeJS.Signals | null): void {
    const expected = this.stopping || (which === 'backend' && this.backendStopping);
    if (!this.started || expected) return;
    if (which === 'backend' && this.options.restartBackend) void this.restartBackend(this.options.restartBackend, code, signal);
    else this.options.onUnexpectedExit?.(which, code, signal);
  }

  private async restartBackend(policy: BackendRestartPolicy, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (Date.now() - this.restarts.readyAt >= policy.stableMs) this.restarts.attempt = 0;
    this.restarts.attempt++;
    const { attempt } = this.restarts;
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    if (attempt > policy.maxAttempts) return this.options.onUnexpectedExit?.('backend', code, signal);
    const delayMs = Math.min(policy.maxMs, policy.initialMs * 2 ** (attempt - 1));
    this.options.log(
      `[stack] the backend ${how}; restarting it in ${(delayMs / 1000).toFixed(1)} s (restart ${attempt} of at most ${policy.maxAttempts} in a row)`,
    );
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    if (this.stopping || this.backendStopping) return;
    try {
      const backend = await this.startBackend();
      this.options.log(`[stack] the backend is back (pid ${backend.pid}), serving at ${this.options.backendUrl}`);
    } catch {
      // it died before it was ready: its exit schedules the next restart
    }
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

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

async function waitFor(url: string, child: ChildProcess, what: string): Promise<Response> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return res;
      lastError = `HTTP ${res.status}`;
    } catch (error) {
      lastError = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what} was not ready at ${url} after ${READY_TIMEOUT_MS / 1000} s (${lastError})`);
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', killAfterMs = 10_000): Promise<void> {
  if (!isRunning(child)) return Promise.resolve();
  return new Promise((resolve) => {
    const killTimer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.once('exit', () => {
      clearTimeout(killTimer);
      resolve();
    });
    child.kill(signal);
  });
}
