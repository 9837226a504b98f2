// The HTTP thread's gate for grammars: every new spec is checked and compiled once in the check thread, with a
// time limit, before the request is admitted, so errors are real 400/413 responses (not in-band) and a spec that compiles
// slowly never reaches the grammar thread that serves running streams. Outcomes are remembered by the spec's text (LRU),
// so a known spec costs the HTTP thread one JSON.stringify.

import type { Worker } from 'node:worker_threads';
import { startTsWorker } from '../ts-worker';
import type { GrammarSpec } from '../../../../shared/protocol';
import { type GrammarSource, MAX_GRAMMAR_TEXT } from './grammar-source';
import type { FromCheckThread, ToCheckThread } from './grammar-check-worker';

export type CheckOutcome = { ok: true; source: GrammarSource } | { ok: false; status: 400 | 413; message: string };

export interface GrammarCheckerOptions {
  /** Model folder whose tokenizer gives the vocabulary; null: grammars are unsupported. */
  modelDir: string | null;
  /** Most CPU time a check may take (413 past it). */
  timeLimitMs?: number;
  /** Outcomes remembered. */
  cacheSize?: number;
  /** Each compile that ran, with its seconds (metrics). */
  onCompile?: (seconds: number, cached: boolean) => void;
}

/** A check still running after this many times the limit in wall time is refused however idle the process was. */
const WALL_LIMIT_FACTOR = 10;
/** Shortest wait before the CPU time is read again. */
const MIN_WATCH_MS = 20;

interface Job {
  spec: GrammarSpec;
  key: string;
  resolve: (outcome: CheckOutcome) => void;
}

export class GrammarChecker {
  private worker: Worker | null = null;
  private ready: Promise<string | null> | null = null;
  private readonly queue: Job[] = [];
  private running: { id: number; job: Job; timer: NodeJS.Timeout } | null = null;
  private nextId = 1;
  private readonly outcomes = new Map<string, CheckOutcome>();
  private closed = false;
  readonly timeLimitMs: number;

  constructor(private readonly options: GrammarCheckerOptions) {
    this.timeLimitMs = options.timeLimitMs ?? 2000;
  }

  check(spec: GrammarSpec): Promise<CheckOutcome> {
    const key = JSON.stringify(spec);
    // Refused here, before the check thread walks it (its schema as lowered is measured there too).
    if (key.length > MAX_GRAMMAR_TEXT) {
      return Promise.resolve({ ok: false, status: 413, message: `the grammar is ${key.length} characters, over the limit of ${MAX_GRAMMAR_TEXT}` });
    }
    const known = this.outcomes.get(key);
    if (known) {
      this.outcomes.delete(key);
      this.outcomes.set(key, known);
      this.options.onCompile?.(0, true);
      return Promise.resolve(known);
    }
    return new Promise((resolve) => {
      this.queue.push({ spec, key, resolve });
      void this.pump();
    });
  }

  /** Starts the check thread now (it loads the vocabulary), so the first grammar request does not wait for it. */
  warm(): void {
    void this.start();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.resolve({ ok: false, status: 400, message: 'the backend is shutting down' });
    await this.worker?.terminate();
    this.worker = null;
  }

  private async pump(): Promise<void> {
    if (this.running || this.queue.length === 0 || this.closed) return;
    const job = this.queue.shift()!;
    const id = this.nextId++;
    this.running = { id, job, timer: undefined as unknown as NodeJS.Timeout };
    const unsupported = await this.start();
    if (unsupported !== null) return this.settle(id, { ok: false, status: 400, message: `this model does not support grammars: ${unsupported}` }, true);
    // The limit is on CPU time, not the clock: a machine busy with other work must not turn a fast compile
    // into a 413. Node 20 has no per-thread CPU clock, so the process's CPU time since the spec went out
    // stands in for the check thread's: it is never less, so nothing is cut off early by it. The wall clock
    // still ends a check at WALL_LIMIT_FACTOR times the limit. Past either, the thread is replaced.
    const cpuAtStart = process.cpuUsage();
    const wallAtStart = performance.now();
    const watch = (delayMs: number) => {
      this.running!.timer = setTimeout(() => {
        const { user, system } = process.cpuUsage(cpuAtStart);
        const cpuMs = (user + system) / 1000;
        const wallMs = performance.now() - wallAtStart;
        if (cpuMs < this.timeLimitMs && wallMs < this.timeLimitMs * WALL_LIMIT_FACTOR) return watch(Math.max(MIN_WATCH_MS, this.timeLimitMs - cpuMs));
        void this.restart();
        // Not remembered: how long a compile takes depends on the load of the moment.
        this.settle(id, { ok: false, status: 413, message: `compiling it took longer than ${this.timeLimitMs} ms` }, false);
      }, delayMs);
    };
    watch(this.timeLimitMs);
    this.worker!.postMessage({ id, spec: job.spec } satisfies ToCheckThread);
  }

  private settle(id: number, outcome: CheckOutcome, remember: boolean): void {
    if (this.running?.id !== id) return;
    clearTimeout(this.running.timer);
    const { job } = this.running;
    this.running = null;
    if (remember) {
      this.outcomes.set(job.key, outcome);
      if (this.outcomes.size > (this.options.cacheSize ?? 256)) this.outcomes.delete(this.outcomes.keys().next().value as string);
    }
    job.resolve(outcome);
    void this.pump();
  }

  /** The check thread, started on first use; resolves with why grammars are unsupported, or null. */
  private start(): Promise<string | null> {
    this.ready ??= new Promise((resolve) => {
      const worker = startTsWorker(new URL('./grammar-check-worker.ts', import.meta.url), { grammarCheck: { modelDir: this.options.modelDir } });
      this.worker = worker;
      worker.unref();
      worker.on('message', (message: FromCheckThread) => {
        if (message.type === 'ready') resolve(message.unsupported);
        else if (message.ok) {
          this.options.onCompile?.(message.seconds, false);
          this.settle(message.id, { ok: true, source: message.source }, true);
        } else {
          if (message.aborted) void this.restart(); // the thread exits; the next check starts a fresh one
          this.settle(message.id, { ok: false, status: message.status, message: message.message }, true);
        }
      });
      const failed = (why: string) => {
        if (this.worker !== worker) return;
        resolve(why);
        this.worker = null;
        this.ready = null;
        if (this.running) this.settle(this.running.id, { ok: false, status: 400, message: `the grammar check failed: ${why}` }, false);
      };
      worker.on('error', (error) => failed(error.message));
      worker.on('exit', () => failed('the check thread exited'));
    });
    return this.ready;
  }

  private async restart(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.ready = null;
    await worker?.terminate();
  }
}
