// The engine thread's handle on the grammar thread (grammar-worker.ts): `prepare` gives a request's matchers
// once its grammar is compiled there; their masks come back by message. The scheduler asks for the masks of a
// step in one message before the engine runs it, so they are filled while session.run holds this thread.
// If the grammar thread dies, the requests using it end with an error and the next prepare starts a new one.

import type { Worker } from 'node:worker_threads';
import { startTsWorker } from '../ts-worker';
import type { GrammarSource } from './grammar-source';
import { GrammarState, type MaskBatch, type TokenMatcher } from './grammar-state';
import type { FromGrammarThread, MaskReply, ToGrammarThread } from './grammar-worker';

interface Vocabulary {
  source: string;
  vocabSize: number;
  eosTokenId: number;
  toolCallsTokenId: number | null;
}

interface Pending<T> {
  resolve: (value: T) => void;
  reject: (error: Error) => void;
}

/** One matcher held by the grammar thread. */
class RemoteMatcher implements TokenMatcher {
  private ahead: Promise<Int32Array> | null = null;
  private stopped = false;

  constructor(
    private readonly thread: GrammarThread,
    private readonly handle: number,
    /** The vocabulary's EOS, the one stop id the grammar thread's compiler was given (grammar-compiler.ts). */
    private readonly stopTokenId: number,
  ) {}

  nextMask(): Promise<Int32Array> {
    const mask = this.ahead ?? this.thread.requestMask(this.handle);
    this.ahead = null;
    return mask;
  }

  accept(tokenId: number): void {
    // A mask asked for ahead and not used is stale now; its reply is dropped.
    this.ahead?.catch(() => {});
    this.ahead = null;
    // XGrammar terminates exactly when it takes the stop id, which it allows only where the grammar can end.
    if (tokenId === this.stopTokenId) this.stopped = true;
    this.thread.post({ type: 'accept', handle: this.handle, tokenId });
  }

  get terminated(): boolean {
    return this.stopped;
  }

  prefetch(): MaskBatch {
    this.ahead ??= this.thread.requestMask(this.handle);
    return this.thread;
  }

  dispose(): void {
    this.ahead?.catch(() => {});
    this.ahead = null;
    this.thread.post({ type: 'dispose', handle: this.handle });
  }
}

export class GrammarThread implements MaskBatch {
  private worker: Worker | null = null;
  private ready: Promise<Vocabulary | { unsupported: string }> | null = null;
  private nextId = 1;
  private readonly prepares = new Map<number, Pending<number[]>>();
  private readonly batches = new Map<number, Pending<MaskReply>[]>();
  /** Mask requests not sent yet: flush() sends them as one batch. */
  private unsent: { handle: number; pending: Pending<MaskReply> }[] = [];
  private closed = false;
  private unsupported = false;

  constructor(
    private readonly dir: string,
    private readonly log: (message: string) => void,
  ) {}

  /** Starts the thread and says what it serves: the vocabulary's source, or why grammars are unavailable. */
  async start(): Promise<{ source: string } | { unsupported: string }> {
    return this.boot();
  }

  /** One matcher per choice, made once `source` is compiled in the grammar thread. */
  async prepare(source: GrammarSource, choices: number): Promise<GrammarState[]> {
    if (this.closed) throw new Error('the grammar thread is closed');
    const vocabulary = await this.boot();
    if ('unsupported' in vocabulary) throw new Error(`grammars are unavailable: ${vocabulary.unsupported}`);
    const id = this.nextId++;
    const handles = await new Promise<number[]>((resolve, reject) => {
      this.prepares.set(id, { resolve, reject });
      this.post({ type: 'prepare', id, source, choices });
    });
    return handles.map(
      (handle) => new GrammarState(new RemoteMatcher(this, handle, vocabulary.eosTokenId), source.toolCalls, vocabulary.toolCallsTokenId, vocabulary.vocabSize),
    );
  }

  requestMask(handle: number): Promise<Int32Array> {
    const reply = new Promise<MaskReply>((resolve, reject) => this.unsent.push({ handle, pending: { resolve, reject } }));
    // A mask asked for outside a batch (the next row of a verification) goes out at once.
    queueMicrotask(() => this.flush());
    return reply.then((answer) => {
      if ('error' in answer) throw new Error(answer.error);
      return answer.mask;
    });
  }

  flush(): void {
    if (this.unsent.length === 0) return;
    const sending = this.unsent;
    this.unsent = [];
    if (!this.worker) {
      for (const { pending } of sending) pending.reject(new Error('the grammar thread is gone'));
      return;
    }
    const batch = this.nextId++;
    this.batches.set(
      batch,
      sending.map(({ pending }) => pending),
    );
    this.post({ type: 'masks', batch, handles: sending.map(({ handle }) => handle) });
  }

  post(message: ToGrammarThread): void {
    this.worker?.postMessage(message);
  }

  /** Ends the thread; matchers still in use fail their next mask, so their requests end with an error. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    this.failPending('closed');
    await worker?.terminate();
  }

  private failPending(why: string): void {
    const error = new Error(`the grammar thread is gone (${why})`);
    for (const pending of this.prepares.values()) pending.reject(error);
    this.prepares.clear();
    for (const waiting of this.batches.values()) for (const pending of waiting) pending.reject(error);
    this.batches.clear();
  }

  private boot(): Promise<Vocabulary | { unsupported: string }> {
    this.ready ??= new Promise((resolve) => {
      const worker = startTsWorker(new URL('./grammar-worker.ts', import.meta.url), { grammarThread: { dir: this.dir } });
      this.worker = worker;
      worker.on('message', (message: FromGrammarThread) => {
        if (message.type === 'ready') {
          this.unsupported = message.unsupported !== null;
          if (message.unsupported !== null) resolve({ unsupported: message.unsupported });
          else resolve({ source: message.source, vocabSize: message.vocabSize, eosTokenId: message.eosTokenId, toolCallsTokenId: message.toolCallsTokenId });
        } else if (message.type === 'prepared') this.settlePrepare(message.id, (pending) => pending.resolve(message.handles));
        else if (message.type === 'prepare-failed') this.settlePrepare(message.id, (pending) => pending.reject(new Error(message.message)));
        else {
          const waiting = this.batches.get(message.batch) ?? [];
          this.batches.delete(message.batch);
          waiting.forEach((pending, index) => pending.resolve(message.replies[index]));
        }
      });
      const lost = (why: string) => {
        if (this.worker !== worker) return;
        this.worker = null;
        // A thread without a vocabulary ends once it has said so: that answer stands.
        if (this.unsupported) return;
        this.ready = null;
        resolve({ unsupported: why });
        if (!this.closed) this.log(`grammar thread lost (${why}); requests using it end, the next one starts a new thread`);
        this.failPending(why);
      };
      worker.on('error', (error) => lost(error.message));
      worker.on('exit', (code) => lost(`exited with code ${code}`));
    });
    return this.ready;
  }

  private settlePrepare(id: number, settle: (pending: Pending<number[]>) => void): void {
    const pending = this.prepares.get(id);
    this.prepares.delete(id);
    if (pending) settle(pending);
  }
}
