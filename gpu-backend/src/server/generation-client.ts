// The HTTP thread's handle on the engine thread: admission (bounded queue, draining), per-request
// event routing, cancellation, latency metrics. The scheduler runs in a worker thread, or in this
// thread for tests (same messages, no structured clone).

import type { GenerateEvent, ModelInfo, StopReason, Usage } from '../../../shared/protocol';
import type { ExecutionProvider, ModelEngine, SessionRuntime } from '../model/runtime/engine-types';
import { QueueCapacity } from './capacity';
import { runEngineHost } from './engine-worker';
import { Metrics, type RequestOutcome } from './metrics';
import { randomSeed } from './prng';
import { startTsWorker } from './ts-worker';
import type { ValidatedGenerateRequest } from './request-schema';
import type { EngineHostOptions, FromEngineThread, ServingLimits, ToEngineThread } from './worker-messages';

export type EventListener = (event: GenerateEvent) => void;

export type SubmitOutcome =
  | { ok: true; id: number; cancel: () => void }
  | { ok: false; code: 'overloaded' | 'shutting_down' | 'backend_unavailable'; message: string };

interface Pending {
  /** The edge's id (GenerateRequest.requestId), by which /v1/stop names it. */
  requestId: string;
  listener: EventListener;
  arrivedAt: number;
  firstTokenSeen: boolean;
  /** Time of each choice's last token event, for inter-token latency. */
  lastTokenAt: Map<number, number>;
  outcome: RequestOutcome;
  /** The edge ended it on a stop string (stop()): the choices it cancels finish as 'stop', not 'abort'. */
  stopped: boolean;
  /** stop() callers waiting for the request's end: its usage, or null when it ended without one (error, drain). */
  endWaiters: ((usage: Usage | null) => void)[];
}

/**
 * Usage of this many ended requests is kept by requestId, so a stop that crosses the request's own end (the edge's
 * client left just as the last tokens went out) is still answered with what was generated.
 */
const ENDED_KEPT = 1024;

/** Which session and provider serve: reported in /ready and /metrics (backend_engine_info). */
export interface EngineLabel {
  runtime: SessionRuntime | 'fake';
  executionProvider: ExecutionProvider | 'none';
}

function engineLabelOf(engine: EngineHostOptions['engine']): EngineLabel {
  if (engine.kind === 'fake') return { runtime: 'fake', executionProvider: 'none' };
  return { runtime: engine.options.runtime ?? 'js', executionProvider: engine.options.executionProvider };
}

interface Transport {
  send(message: ToEngineThread): void;
  close(): Promise<void>;
}

export class GenerationClient {
  readonly metrics = new Metrics();
  readonly engine: EngineLabel;
  modelInfo: ModelInfo | null = null;
  limits: ServingLimits | null = null;
  private readonly pending = new Map<number, Pending>();
  /** requestId -> usage of the last ENDED_KEPT requests that ended with one, oldest first. */
  private readonly ended = new Map<string, Usage>();
  /** Choices accepted and not yet ended (capacity.ts); made when the engine thread sends its limits. */
  private queue: QueueCapacity | null = null;
  private nextId = 1;
  private draining = false;
  private failure: string | null = null;
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (error: Error) => void;
  private idleWaiters: (() => void)[] = [];
  private stoppedWaiter: (() => void) | null = null;
  private transport!: Transport;
  private closing: Promise<void> | null = null;

  /** Logs from the engine thread; debug lines only when `debug` is set. */
  onLog: (level: 'info' | 'debug', message: string) => void = () => {};
  /** Called once when the engine thread fails (load error, crash); requests in flight got an error event. */
  onFailure: (message: string) => void = () => {};

  private constructor(options: EngineHostOptions) {
    this.engine = engineLabelOf(options.engine);
    this.metrics.setEngine(this.engine);
    this.readyPromise = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.readyPromise.catch(() => {}); // observed through whenReady()
  }

  /** The scheduler and engine in a worker thread (the server's mode). */
  static inWorker(options: EngineHostOptions): GenerationClient {
    const client = new GenerationClient(options);
    const worker = startTsWorker(new URL('./engine-worker.ts', import.meta.url), { engineHost: options });
    worker.on('message', (message: FromEngineThread) => client.receive(message));
    worker.on('error', (error) => client.receive({ type: 'failed', message: error.message }));
    let closing = false;
    worker.on('exit', (code) => {
      if (code !== 0 && !closing) client.receive({ type: 'failed', message: `engine thread exited with code ${code}` });
    });
    client.transport = {
      send: (message) => worker.postMessage(message),
      close: async () => {
        closing = true;
        await worker.terminate();
      },
    };
    return client;
  }

  /** The scheduler in this thread; `engine` overrides what options.engine would load. */
  static inProcess(options: EngineHostOptions, engine?: ModelEngine): GenerationClient {
    const client = new GenerationClient(options);
    let handler: (message: ToEngineThread) => void = () => {};
    const done = runEngineHost(options, { post: (message) => client.receive(message), onMessage: (h) => (handler = h) }, engine);
    client.transport = {
      send: (message) => handler(message),
      close: () => done,
    };
    return client;
  }

  whenReady(): Promise<void> {
    return this.readyPromise;
  }

  isReady(): boolean {
    return this.modelInfo !== null && this.failure === null;
  }

  submit(request: ValidatedGenerateRequest, listener: EventListener): SubmitOutcome {
    if (this.draining) return { ok: false, code: 'shutting_down', message: 'The backend is shutting down.' };
    if (!this.isReady() || !this.queue) {
      return { ok: false, code: 'backend_unavailable', message: this.failure ?? 'The model is still loading.' };
    }
    if (!this.queue.canAdmit(request.sampling.n)) return { ok: false, code: 'overloaded', message: 'Too many requests are queued; retry later.' };
    const id = this.nextId++;
    this.queue.reserve(id, request.sampling.n);
    this.pending.set(id, {
      requestId: request.requestId,
      listener,
      arrivedAt: performance.now(),
      firstTokenSeen: false,
      lastTokenAt: new Map(),
      outcome: 'stop',
      stopped: false,
      endWaiters: [],
    });
    const sampling = { ...request.sampling, seed: request.sampling.seed ?? randomSeed() };
    this.transport.send({
      type: 'submit',
      request: { id, tokenIds: request.tokenIds, sampling, prefixLength: request.prefixLength, grammar: request.grammar },
    });
    return { ok: true, id, cancel: () => this.transport.send({ type: 'cancel', id }) };
  }

  /**
   * The edge ends the request named `requestId`: on a stop string (what the cancel cuts short counts as a stop) or
   * because its client left (an abort). Resolves with its usage once it has ended, the count of what the scheduler
   * generated for it; a request that already ended is answered from the kept usages at once. Null when the id names
   * nothing this client knows. Every request in flight of that id is stopped and their usages summed (the edge
   * makes ids unique; a repeated id only ever names the caller's own requests).
   */
  stop(requestId: string, reason: StopReason): Promise<Usage | null> | null {
    const ends: Promise<Usage | null>[] = [];
    for (const [id, entry] of this.pending) {
      if (entry.requestId !== requestId) continue;
      if (reason === 'stop_string') entry.stopped = true;
      ends.push(new Promise((resolve) => entry.endWaiters.push(resolve)));
      this.transport.send({ type: 'cancel', id });
    }
    if (ends.length === 0) {
      const usage = this.ended.get(requestId);
      return usage ? Promise.resolve(usage) : null;
    }
    return Promise.all(ends).then((usages) => (usages.includes(null) ? null : sumUsage(usages as Usage[])));
  }

  /** Resolves once no request is in flight (every one ended or failed). */
  idle(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops admission, waits up to `deadlineMs` for running requests to finish, then ends the rest
   * with an in-band `shutting_down` error and stops the engine thread.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    if (this.pending.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.idle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)))]);
      clearTimeout(timer);
    }
    for (const [id, entry] of this.pending) {
      this.finish(id, 'shutting_down');
      entry.listener({
        event: 'error',
        data: { message: 'The backend shut down before the request finished.', type: 'server_error', param: null, code: 'shutting_down' },
      });
      this.transport.send({ type: 'cancel', id });
    }
    await this.close();
  }

  /** Stops the engine thread (after disposing the engine when it is healthy). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.stopEngineThread();
    return this.closing;
  }

  private async stopEngineThread(): Promise<void> {
    this.draining = true;
    if (this.isReady()) {
      const stopped = new Promise<void>((resolve) => (this.stoppedWaiter = resolve));
      this.transport.send({ type: 'stop' });
      await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    }
    await this.transport.close();
  }

  private receive(message: FromEngineThread): void {
    switch (message.type) {
      case 'ready':
        this.modelInfo = message.modelInfo;
        this.limits = message.limits;
        this.queue = new QueueCapacity(message.limits.maxRunning + message.limits.maxQueue);
        if (message.stats) this.metrics.updateScheduler(message.stats);
        this.resolveReady();
        return;
      case 'step':
        this.metrics.updateScheduler(message.stats);
        for (const [id, event] of message.events) this.route(id, event);
        return;
      case 'failed':
        this.failure = message.message;
        this.rejectReady(new Error(`engine failed: ${message.message}`));
        for (const [id, entry] of this.pending) {
          this.finish(id, 'error');
          entry.listener({ event: 'error', data: { message: 'The model engine failed.', type: 'server_error', param: null, code: 'internal_error' } });
        }
        this.onFailure(message.message);
        return;
      case 'log':
        this.onLog(message.level, message.message);
        return;
      case 'stopped':
        this.stoppedWaiter?.();
        return;
    }
  }

  private route(id: number, sent: GenerateEvent): void {
    const entry = this.pending.get(id);
    if (!entry) return; // ended here already (shutdown, error): the engine thread is catching up
    const event = entry.stopped ? asStopped(sent) : sent;
    const now = performance.now();
    if (event.event === 'token') {
      if (!entry.firstTokenSeen) {
        entry.firstTokenSeen = true;
        this.metrics.observeTimeToFirstToken((now - entry.arrivedAt) / 1000);
      }
      const last = entry.lastTokenAt.get(event.data.choice);
      if (last !== undefined) this.metrics.observeInterTokenLatency((now - last) / 1000);
      entry.lastTokenAt.set(event.data.choice, now);
    } else if (event.event === 'finish') {
      // A request's outcome is its most telling choice: abort over length over stop.
      const reason = event.data.finishReason;
      if (reason === 'abort' || (reason === 'length' && entry.outcome === 'stop')) entry.outcome = reason;
    } else if (event.event === 'end') {
      this.metrics.countUsage(event.data.usage);
      this.finish(id, entry.outcome, event.data.usage);
    } else {
      this.finish(id, 'error');
    }
    entry.listener(event);
  }

  private finish(id: number, outcome: RequestOutcome, usage: Usage | null = null): void {
    const entry = this.pending.get(id);
    if (entry && usage) {
      this.ended.delete(entry.requestId);
      this.ended.set(entry.requestId, usage);
      if (this.ended.size > ENDED_KEPT) this.ended.delete(this.ended.keys().next().value as string);
    }
    for (const resolve of entry?.endWaiters.splice(0) ?? []) resolve(usage);
    this.pending.delete(id);
    this.queue?.release(id);
    this.metrics.countRequest(outcome);
    if (this.pending.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}

/** A choice that the cancel of a stop() cut short finished on a stop, as far as anyone downstream can tell. */
function asStopped(event: GenerateEvent): GenerateEvent {
  if (event.event !== 'finish' || event.data.finishReason !== 'abort') return event;
  return { event: 'finish', data: { ...event.data, finishReason: 'stop' } };
}

function sumUsage(usages: Usage[]): Usage {
  return usages.reduce((sum, usage) => ({
    promptTokens: sum.promptTokens + usage.promptTokens,
    completionTokens: sum.completionTokens + usage.completionTokens,
    cachedTokens: sum.cachedTokens + usage.cachedTokens,
  }));
}
