// The scheduler on the real ONNX engine (small random models, CPU): batch invariance, prefix cache
// across a sliding window, n > 1 forks, and the server path through a real worker thread.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type GenerateEvent, type SamplingParams } from '../../../shared/protocol';
import fs from 'node:fs';
import { Engine, type EngineLoadOptions } from '../model/runtime/engine';
import { NATIVE_ADDON_PATH, NativeUnavailableError } from '../model/runtime/native-session';
import { randomModelWeights } from '../model/checkpoint/default-model';
import { MapWeightSource, tinyConfig } from '../model/reference/test-models';
import { createBackendApp } from './app';
import { GenerationClient } from './generation-client';
import { GrammarCompilerCache } from './grammar/grammar-compiler';
import { grammarSourceOf } from './grammar/grammar-source';
import { GrammarState } from './grammar/grammar-state';
import { vocabularyOf } from './grammar/model-vocabulary';
import { Scheduler, type SchedulerLimits } from './scheduler';
import { fakeGreedy, readEvents } from './test-support';

const WINDOW = 8;
const CONFIG = tinyConfig({ vocabSize: 128, slidingWindow: WINDOW, maxPositions: 256 });

function newEngine(options: Partial<EngineLoadOptions> = {}): Promise<Engine> {
  return Engine.fromWeights(new MapWeightSource(CONFIG, randomModelWeights(CONFIG, 7)), {
    modelDir: 'random-window-model',
    dtype: 'fp32',
    executionProvider: 'cpu',
    intraOpThreads: 1,
    maxSequences: 12,
    onnxCacheDir: null,
    ...options,
  });
}

function promptOf(length: number, salt: number): number[] {
  return Array.from({ length }, (_, i) => 3 + ((i * 11 + salt * 17) % (CONFIG.vocabSize - 3)));
}

/** Runs requests to completion on one scheduler; returns each request's choices' ids and usage. */
async function serve(
  engine: Engine,
  requests: { tokenIds: number[]; sampling?: Partial<SamplingParams>; prefixLength?: number; afterSteps?: number; grammar?: () => Promise<GrammarState[]> }[],
  limits: Partial<SchedulerLimits> = {},
) {
  const events = new Map<number, GenerateEvent[]>();
  const scheduler = new Scheduler(
    engine,
    { maxRunning: 8, maxBatchedTokens: 16, prefixCacheSize: 0, prefixBlockTokens: 4, prefillStallFactor: 0, prefillMinTokens: 8, ...limits },
    (id, event) => {
      events.set(id, [...(events.get(id) ?? []), event]);
    },
  );
  let steps = 0;
  const submitDue = async () => {
    for (const [index, request] of requests.entries()) {
      if ((request.afterSteps ?? 0) !== steps) continue;
      const sampling = { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens: 6, seed: index, ...request.sampling };
      scheduler.submit(
        { id: index, tokenIds: request.tokenIds, sampling: { ...sampling, seed: sampling.seed ?? index }, prefixLength: request.prefixLength },
        request.grammar ? await request.grammar() : null,
      );
    }
  };
  await submitDue();
  while (scheduler.hasWork() || requests.some((request) => (request.afterSteps ?? 0) > steps)) {
    await scheduler.step();
    steps++;
    await submitDue();
  }
  return requests.map((request, index) => {
    const list = events.get(index)!;
    const finish = list.find((event) => event.event === 'finish');
    const choices = Array.from({ length: request.sampling?.n ?? 1 }, (_, choice) =>
      list.flatMap((event) => (event.event === 'token' && event.data.choice === choice ? event.data.tokenIds : [])),
    );
    const end = list.at(-1)!;
    return { choices, usage: end.event === 'end' ? end.data.usage : null, finishReason: finish?.event === 'finish' ? finish.data.finishReason : null };
  });
}

describe('scheduler on the real engine', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await newEngine();
  });
  afterAll(async () => {
    await engine.dispose();
  });

  it('a greedy and a seeded request give the same ids alone and among 7 others (batch invariance)', async () => {
    const target = { tokenIds: promptOf(13, 1), sampling: { maxTokens: 12 } };
    const seeded = { tokenIds: promptOf(9, 13), sampling: { maxTokens: 12, temperature: 0.9, topP: 0.95, seed: 77 } };
    const [alone, seededAlone] = await serve(engine, [target, { ...seeded, afterSteps: 40 }]);
    const company = [
      ...[2, 3, 4].map((salt) => ({ tokenIds: promptOf(5 + salt * 7, salt), sampling: { temperature: 1, maxTokens: 20 } })),
      { ...target, afterSteps: 2 },
      ...[5, 6, 7].map((salt) => ({ tokenIds: promptOf(salt * 3, salt), sampling: { temperature: 0.7, maxTokens: 15 }, afterSteps: salt - 4 })),
      { ...seeded, afterSteps: 1 },
    ];
    const results = await serve(engine, company);
    expect(results[3].choices[0]).toEqual(alone.choices[0]);
    expect(results[7].choices[0]).toEqual(seededAlone.choices[0]); // same seed, same ids, whatever the company
    expect(new Set(alone.choices[0]).size).toBeGreaterThan(3); // a wandering output, not one repeated id
    expect(engine.freeSequences()).toBe(12);
  });

  it('a grammar-constrained neighbour leaves an unconstrained output unchanged (batch invariance), and its own output is the JSON asked for', async () => {
    // A 128-id vocabulary of single characters (byte pieces are not needed for ASCII JSON): ids 3.. are the
    // printable ASCII characters, "▁" for the space. EOS (2) ends the grammar.
    const pieces = [
      '<unk>',
      '<s>',
      '</s>',
      ...Array.from({ length: 95 }, (_, i) => (i === 0 ? '▁' : String.fromCharCode(32 + i))),
      ...Array.from({ length: 30 }, (_, i) => `w${i}`),
    ];
    const types = pieces.map((_, id) => (id === 0 ? 2 : id < 3 ? 3 : 1));
    const compilers = await GrammarCompilerCache.create(vocabularyOf({ pieces, types, source: 'test' }, CONFIG.vocabSize, CONFIG.eosTokenId));
    const built = grammarSourceOf({
      type: 'json_schema',
      schema: { type: 'object', properties: { k: { enum: ['ab', 'cd', 'xyz'] }, n: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['k', 'n'] },
    });
    if (!built.ok) throw new Error(built.message);
    const compiled = await compilers.compile(built.source);
    const grammar = async () => [await GrammarState.create(compilers.xgrammar, compiled, built.source, null, CONFIG.vocabSize)];
    const plain = { tokenIds: promptOf(11, 21), sampling: { maxTokens: 14, temperature: 1, seed: 5 } };
    const constrained = { tokenIds: promptOf(9, 22), sampling: { maxTokens: 40, temperature: 1, seed: 6, ignoreEos: false }, grammar };
    const [alone] = await serve(engine, [plain]);
    const [together, json] = await serve(engine, [plain, constrained]);
    expect(together.choices[0]).toEqual(alone.choices[0]);
    expect(json.finishReason).toBe('stop');
    const value = JSON.parse(json.choices[0].map((id) => pieces[id].replace('▁', ' ')).join(''));
    expect(['ab', 'cd', 'xyz']).toContain(value.k);
    expect(Object.keys(value)).toEqual(['k', 'n']);
    expect(engine.freeSequences()).toBe(12);
  });

  it('prefix-cache hit past the sliding window equals the uncached output', async () => {
    const system = promptOf(5 * WINDOW, 9); // 40 tokens: the snapshot holds a wrapped rolling buffer
    const first = { tokenIds: [...system, ...promptOf(6, 10)], prefixLength: system.length };
    const second = { tokenIds: [...system, ...promptOf(7, 11)], prefixLength: system.length, afterSteps: 12, sampling: { maxTokens: 10 } };
    // Three entries: the marked head, the first prompt minus its last id, then the first's finished row.
    const cached = await serve(engine, [first, second], { prefixCacheSize: 3 });
    expect(cached[1].usage!.cachedTokens).toBe(system.length);
    const fresh = await newEngine();
    try {
      const [uncached] = await serve(fresh, [{ ...second, afterSteps: 0 }]);
      expect(uncached.usage!.cachedTokens).toBe(0);
      expect(cached[1].choices[0]).toEqual(uncached.choices[0]);
      expect(new Set(uncached.choices[0]).size).toBeGreaterThan(3);
    } finally {
      await fresh.dispose();
    }
  });

  it('n > 1 forks the prefilled prompt: every greedy choice equals the single-choice output', async () => {
    const prompt = promptOf(3 * WINDOW + 2, 12);
    const [single] = await serve(engine, [{ tokenIds: prompt, sampling: { maxTokens: 8 } }]);
    const [forked] = await serve(engine, [{ tokenIds: prompt, sampling: { maxTokens: 8, n: 3 } }]);
    expect(forked.choices).toEqual([single.choices[0], single.choices[0], single.choices[0]]);
  });
});

describe('scheduler on the native session (--runtime native)', () => {
  it('serves what the JS session serves: staggered greedy and sampled requests, prefix-cache hits past the window, n > 1 forks', async () => {
    if (!fs.existsSync(NATIVE_ADDON_PATH)) {
      await expect(newEngine({ runtime: 'native' })).rejects.toThrow(NativeUnavailableError);
      return;
    }
    const prefix = promptOf(2 * WINDOW + 3, 21);
    const requests = [
      { tokenIds: promptOf(13, 1), sampling: { maxTokens: 12 } },
      ...[2, 3, 4].map((salt) => ({ tokenIds: promptOf(5 + salt * 7, salt), sampling: { temperature: 0.9, maxTokens: 14 }, afterSteps: salt - 2 })),
      { tokenIds: [...prefix, 5, 6], prefixLength: prefix.length, sampling: { maxTokens: 10 } },
      { tokenIds: [...prefix, 7], prefixLength: prefix.length, sampling: { maxTokens: 10, n: 2, temperature: 0.8 }, afterSteps: 6 },
      { tokenIds: promptOf(9, 13), sampling: { maxTokens: 12, temperature: 0.9, topP: 0.95, seed: 77 }, afterSteps: 3 },
    ];
    const limits = { prefixCacheSize: 2 };
    const js = await newEngine({ attention: 'fused' });
    const expected = await serve(js, requests, limits);
    await js.dispose();
    const native = await newEngine({ runtime: 'native' });
    try {
      expect(await serve(native, requests, limits)).toEqual(expected);
      expect(native.freeSequences()).toBe(12 - 2); // only the two prefix snapshots stay
    } finally {
      await native.dispose();
    }
  });
});

describe('server path through a real worker thread', () => {
  it('streams the fake model reference from the engine thread', async () => {
    const client = GenerationClient.inWorker({ engine: { kind: 'fake', options: { vocabSize: 64 } } });
    try {
      await client.whenReady();
      const app = createBackendApp({ client });
      const prompt = [1, 4, 9, 16];
      const body = { requestId: 'w', tokenIds: prompt, sampling: { temperature: 0, maxTokens: 6, ignoreEos: true }, stream: true };
      const events = await readEvents(await app.request('/v1/generate', { method: 'POST', body: JSON.stringify(body) }));
      expect(events.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : []))).toEqual(fakeGreedy(prompt, 6, 64));
      expect(events.at(-1)!.event).toBe('end');
    } finally {
      await client.close();
    }
  });
});
