// Speed part of the device check: one generated Mistral-shaped model through the serving engine:
// prefill tokens/s for one prompt, then decode tokens/s for batches of sequences at given contexts.
// Every phase checks the time budget first and is reported as skipped when it would not fit.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine } from '../src/model/runtime/engine';
import type { ExecutionProvider, SessionRuntime, WeightFormat } from '../src/model/runtime/engine-types';
import { TiledRandomWeights, benchConfig } from './bench-weights';

export interface SpeedPlan {
  shape: '125m' | '7b' | 'tiny';
  layerCount: number;
  dtype: WeightFormat;
  prefillTokens: number;
  contexts: number[];
  batches: number[];
  /** Decode steps timed per (context, batch), after one untimed step. */
  decodeSteps: number;
}

export interface SpeedRow {
  phase: 'load' | 'prefill' | 'decode';
  context: number;
  batch: number;
  /** Tokens per second (aggregate over the batch); seconds for 'load'. */
  value: number | null;
  note?: string;
  /** Host<->device bytes of the last step (kvStats().lastStepTransferBytes). */
  transferBytes?: number;
}

export interface Budget {
  /** Seconds left before the whole check must end. */
  remaining(): number;
}

const CHUNK = 512;
/** Positions of every generated model: the longest full plan's context (4096) and its decode steps, rounded up. */
const SHARED_POSITIONS = 4224;

function randomIds(count: number, vocabSize: number, salt: number): number[] {
  return Array.from({ length: count }, (_, i) => 3 + ((i * 7919 + salt * 104729) % (vocabSize - 3)));
}

/** What the check runs on: the provider, and the session that drives it (onnxruntime-node's or the native addon's). */
export interface DeviceTarget {
  executionProvider: ExecutionProvider;
  runtime: SessionRuntime;
  /** Native session on cuda: decode replays CUDA graphs (EngineOptions.cudaGraphs; undefined: the engine's default). */
  cudaGraphs?: boolean;
}

export async function measureSpeed(
  plan: SpeedPlan,
  { executionProvider, runtime, cudaGraphs }: DeviceTarget,
  intraOpThreads: number,
  budget: Budget,
  log: (line: string) => void,
  /** File prefix for an ONNX Runtime per-op profile of the resident-cache session. */
  profilePrefix?: string,
  /** Graphs built for earlier plans of the same run (a 7B-shape layer takes tens of seconds to build); default a folder of its own. */
  graphCacheDir?: string,
): Promise<SpeedRow[]> {
  const maxContext = Math.max(...plan.contexts, plan.prefillTokens);
  const maxBatch = Math.max(...plan.batches);
  // One position count for every plan of a run (the rotary tables are part of the graph, so of its cache key):
  // the short rows beside the full ones then load the graph the full ones built.
  const config = benchConfig(plan.shape, plan.layerCount, Math.max(SHARED_POSITIONS, maxContext + plan.decodeSteps * plan.contexts.length * 2 + 64));
  const cacheDir = graphCacheDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'device-check-onnx-'));
  const rows: SpeedRow[] = [];
  const loadStart = performance.now();
  const engine = await Engine.fromWeights(new TiledRandomWeights(config, 6), {
    modelDir: `bench-${plan.shape}-${plan.layerCount}L`,
    dtype: plan.dtype,
    executionProvider,
    runtime,
    cudaGraphs,
    intraOpThreads,
    maxSequences: maxBatch,
    maxModelLen: config.maxPositions,
    chunkSize: CHUNK,
    onnxCacheDir: cacheDir,
    profilePrefix,
  });
  // The store's line says how decode runs (with CUDA graphs, or why not): the figures below depend on it.
  rows.push({ phase: 'load', context: 0, batch: 0, value: (performance.now() - loadStart) / 1000, note: engine.kvCacheSummary() });
  log(`  loaded in ${rows[0].value!.toFixed(1)} s; ${rows[0].note}`);
  try {
    // Prefill: one untimed prompt (kernel compilation, allocation), then the timed one.
    const warm = engine.createSequence();
    await engine.step([{ sequenceId: warm, tokenIds: randomIds(plan.prefillTokens, config.vocabSize, 1) }]);
    engine.releaseSequence(warm);
    const timed = engine.createSequence();
    let start = performance.now();
    await engine.step([{ sequenceId: timed, tokenIds: randomIds(plan.prefillTokens, config.vocabSize, 2) }]);
    const prefillSeconds = (performance.now() - start) / 1000;
    const prefillRate = plan.prefillTokens / prefillSeconds;
    rows.push({ phase: 'prefill', context: plan.prefillTokens, batch: 1, value: prefillRate });
    log(`  prefill ${plan.prefillTokens}: ${prefillRate.toFixed(1)} tok/s`);
    engine.releaseSequence(timed);

    // Exactly `batch` sequences are alive while a batch is timed (a resident cache costs per row held):
    // the first context goes from the largest batch down, later ones up again, releasing the newest.
    const sequences: number[] = [];
    const contexts = [...plan.contexts].sort((a, b) => a - b);
    for (const context of contexts) {
      const batches = [...plan.batches].sort((a, b) => (context === contexts[0] ? b - a : a - b));
      for (const batch of batches) {
        while (sequences.length > batch) engine.releaseSequence(sequences.pop()!);
        // Bring the first `batch` sequences to `context` tokens (the prefill rate estimates the cost).
        let missing = 0;
        for (let i = 0; i < batch; i++) missing += context - (i < sequences.length ? engine.sequenceLength(sequences[i]) : 0);
        const needed = Math.max(0, missing) / prefillRate + (plan.decodeSteps + 1) * batch * 0.01 + 2;
        if (needed > budget.remaining()) {
          rows.push({ phase: 'decode', context, batch, value: null, note: `skipped: needs ~${needed.toFixed(0)} s` });
          log(`  decode ctx ${context} batch ${batch}: skipped (needs ~${needed.toFixed(0)} s, ${budget.remaining().toFixed(0)} s left)`);
          continue;
        }
        while (sequences.length < batch) sequences.push(engine.createSequence());
        // Long prompts cost more per token than the 512-token estimate (attention): re-check as they go.
        let filled = true;
        for (let i = 0; i < batch && filled; i++) {
          const length = engine.sequenceLength(sequences[i]);
          if (budget.remaining() < 15) filled = false;
          else if (length < context) await engine.step([{ sequenceId: sequences[i], tokenIds: randomIds(context - length, config.vocabSize, 10 + i) }]);
        }
        if (!filled) {
          rows.push({ phase: 'decode', context, batch, value: null, note: 'skipped: budget ran out while filling the context' });
          log(`  decode ctx ${context} batch ${batch}: skipped (budget ran out while filling the context)`);
          continue;
        }
        const items = (step: number) =>
          sequences.slice(0, batch).map((sequenceId, i) => ({ sequenceId, tokenIds: [randomIds(1, config.vocabSize, step * 31 + i)[0]] }));
        await engine.step(items(0));
        start = performance.now();
        for (let step = 1; step <= plan.decodeSteps; step++) await engine.step(items(step));
        const rate = (plan.decodeSteps * batch) / ((performance.now() - start) / 1000);
        const transferBytes = engine.kvStats().lastStepTransferBytes;
        rows.push({ phase: 'decode', context, batch, value: rate, transferBytes });
        log(`  decode ctx ${context} batch ${batch}: ${rate.toFixed(1)} tok/s (step transfer ${(transferBytes / 1024).toFixed(0)} KiB)`);
      }
    }
  } finally {
    await engine.dispose();
    if (!graphCacheDir) fs.rmSync(cacheDir, { recursive: true, force: true });
  }
  return rows;
}
