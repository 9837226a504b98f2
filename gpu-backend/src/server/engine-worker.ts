// The engine thread: loads the model, warms it with one step, runs the scheduler loop and talks to
// the HTTP thread by messages. session.run blocks its thread for a whole step, so it must not share
// one with HTTP, SSE and cancellation. `runEngineHost` also runs in-process (tests, fake engine).

import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { GenerateEvent, ModelInfo } from '../../../shared/protocol';
import { servingLimits } from '../config';
import type { ModelEngine } from '../model/runtime/engine-types';
import { FakeEngine } from './fake-engine';
import { GrammarThread } from './grammar/grammar-thread';
import { Scheduler } from './scheduler';
import type { ScheduledRequest } from './sequence';
import type { EngineHostOptions, FromEngineThread, ToEngineThread } from './worker-messages';

export interface EngineHostPort {
  post(message: FromEngineThread): void;
  onMessage(handler: (message: ToEngineThread) => void): void;
}

async function loadEngine(options: EngineHostOptions['engine']): Promise<ModelEngine> {
  if (options.kind === 'fake') return new FakeEngine(options.options);
  // Imported on demand: fake-engine hosts never load onnxruntime-node.
  const { Engine } = await import('../model/runtime/engine');
  return Engine.load(options.options);
}

function modelInfoOf(engine: ModelEngine, modelId = engine.modelId): ModelInfo {
  const { config } = engine;
  return {
    modelId,
    vocabSize: config.vocabSize,
    maxModelLen: engine.maxModelLen,
    slidingWindow: config.slidingWindow,
    bosTokenId: config.bosTokenId,
    eosTokenId: config.eosTokenId,
  };
}

/** One throwaway step so the first request does not pay for lazy initialisation; /ready waits for it. */
async function warmUp(engine: ModelEngine): Promise<void> {
  const sequenceId = engine.createSequence();
  try {
    await engine.step([{ sequenceId, tokenIds: [engine.config.bosTokenId] }]);
  } finally {
    engine.releaseSequence(sequenceId);
  }
}

/**
 * The grammar thread that compiles grammars and runs their matchers for this engine, or why there is none
 * (requests with a grammar never get here then).
 */
async function loadGrammars(options: EngineHostOptions, port: EngineHostPort): Promise<GrammarThread | null> {
  const dir = options.vocabularyDir ?? (options.engine.kind === 'onnx' ? options.engine.options.modelDir : undefined);
  if (!dir) return null;
  const log = (message: string) => port.post({ type: 'log', level: 'info', message });
  const thread = new GrammarThread(dir, log);
  const started = await thread.start();
  if ('unsupported' in started) {
    log(`grammars (structured output, tool calls) unavailable: ${started.unsupported}`);
    await thread.close();
    return null;
  }
  log(`grammars: vocabulary from ${started.source}, compiled and matched in their own thread`);
  return thread;
}

/** Runs until a 'stop' message; `engine` may be given directly (in-process hosts with a prepared fake). */
export async function runEngineHost(options: EngineHostOptions, port: EngineHostPort, engine?: ModelEngine): Promise<void> {
  let scheduler: Scheduler;
  try {
    engine ??= await loadEngine(options.engine);
    if ('kvCacheSummary' in engine && typeof engine.kvCacheSummary === 'function') port.post({ type: 'log', level: 'info', message: engine.kvCacheSummary() });
    await warmUp(engine);
    const limits = servingLimits(engine.freeSequences(), options.limits);
    let events: [number, GenerateEvent][] = [];
    scheduler = new Scheduler(engine, limits, (id, event) => events.push([id, event]));
    const grammars = await loadGrammars(options, port);
    // Requests waiting for their matchers (the grammar thread compiles meanwhile); true once cancelled.
    const preparing = new Map<number, boolean>();
    const submitWithGrammar = async (request: ScheduledRequest) => {
      preparing.set(request.id, false);
      try {
        if (!grammars) throw new Error('no grammar vocabulary');
        const states = await grammars.prepare(request.grammar!, request.sampling.n);
        scheduler.submit(request, states);
        if (preparing.get(request.id)) scheduler.cancel(request.id);
      } catch (error) {
        port.post({ type: 'log', level: 'info', message: `grammar of request ${request.id} could not be prepared: ${(error as Error).message}` });
        const data = { message: 'The grammar could not be prepared.', type: 'server_error', param: 'grammar', code: 'internal_error' } as const;
        port.post({ type: 'step', events: [[request.id, { event: 'error', data }]], stats: scheduler.stats() });
      } finally {
        preparing.delete(request.id);
      }
    };
    port.onMessage((message) => {
      if (message.type === 'submit') {
        if (message.request.grammar) void submitWithGrammar(message.request);
        else scheduler.submit(message.request);
      } else if (message.type === 'cancel') {
        if (preparing.has(message.id)) preparing.set(message.id, true);
        else scheduler.cancel(message.id);
      } else scheduler.stop();
    });
    port.post({ type: 'ready', modelInfo: modelInfoOf(engine, options.modelId), limits, stats: scheduler.stats() });
    const flush = (didWork = true) => {
      if (!didWork && events.length === 0) return;
      const stats = scheduler.stats();
      port.post({ type: 'step', events, stats });
      events = [];
      if (options.logStepTransfers && didWork) {
        const ms = (stats.lastStepSeconds * 1000).toFixed(1);
        port.post({
          type: 'log',
          level: 'debug',
          message: `step: ${stats.lastDecodeCount} decodes + ${stats.lastPrefillTokens} prefill tokens, ${ms} ms, ${stats.kv.lastStepTransferBytes} bytes moved`,
        });
      }
    };
    await scheduler.run(flush);
    flush();
    await grammars?.close();
    await engine.dispose();
    port.post({ type: 'stopped' });
  } catch (error) {
    port.post({ type: 'failed', message: (error as Error).message });
  }
}

if (!isMainThread && parentPort && (workerData as { engineHost?: EngineHostOptions } | null)?.engineHost) {
  const port = parentPort;
  void runEngineHost((workerData as { engineHost: EngineHostOptions }).engineHost, {
    post: (message) => port.postMessage(message),
    onMessage: (handler) => port.on('message', handler),
  });
}
