// Speculative decoding in the scheduler (prompt-lookup drafts verified in the batched step) on the fake
// model: the same ids, finish reasons and logprobs with and without drafts; under sampling the
// distribution of the ids against the exact one computed from the fake model's logits (chi-square).

import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type GenerateEvent, type SamplingParams } from '../../../shared/protocol';
import { FakeEngine, fakeLogits } from './fake-engine';
import { Scheduler, type SchedulerLimits } from './scheduler';

const LIMITS: SchedulerLimits = {
  maxRunning: 64,
  maxBatchedTokens: 1024,
  prefixCacheSize: 4,
  prefixBlockTokens: 4,
  prefillStallFactor: 0,
  prefillMinTokens: 8,
};
const K = 4;

interface Run {
  outputs: number[][][]; // [request][choice] ids
  finishes: string[][];
  logprobs: unknown[][];
  drafted: number;
  accepted: number;
  verifySteps: number;
}

async function serve(vocabSize: number, speculative: boolean, requests: { tokenIds: number[]; sampling: Partial<SamplingParams> }[]): Promise<Run> {
  const engine = new FakeEngine({ vocabSize, maxSequences: 80, speculativeTokens: K });
  const events = new Map<number, GenerateEvent[]>();
  const scheduler = new Scheduler(engine, { ...LIMITS, speculativeTokens: speculative ? K : 0 }, (id, event) => {
    if (!events.has(id)) events.set(id, []);
    events.get(id)!.push(event);
  });
  requests.forEach(({ tokenIds, sampling }, index) => {
    const full = { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, seed: 1, ...sampling };
    scheduler.submit({ id: index + 1, tokenIds, sampling: { ...full, seed: full.seed ?? 1 } });
  });
  while (await scheduler.step());
  const of = (id: number) => events.get(id) ?? [];
  const choices = (id: number) => Array.from({ length: requests[id - 1].sampling.n ?? 1 }, (_, choice) => choice);
  const tokenEvents = (id: number, choice: number) => of(id).flatMap((event) => (event.event === 'token' && event.data.choice === choice ? [event.data] : []));
  const stats = scheduler.stats();
  return {
    outputs: requests.map((_, i) => choices(i + 1).map((choice) => tokenEvents(i + 1, choice).flatMap((data) => data.tokenIds))),
    finishes: requests.map((_, i) =>
      choices(i + 1).map((choice) => of(i + 1).flatMap((e) => (e.event === 'finish' && e.data.choice === choice ? [e.data.finishReason] : []))[0]),
    ),
    logprobs: requests.map((_, i) => choices(i + 1).flatMap((choice) => tokenEvents(i + 1, choice).flatMap((data) => data.logprobs ?? []))),
    drafted: stats.speculativeDrafted,
    accepted: stats.speculativeAccepted,
    verifySteps: engine.stepLog.flat().filter((item) => item.verify).length,
  };
}

/** A prompt that repeats a short phrase: lookup always finds a draft. */
const copyingPrompt = (length: number, period: number, offset = 0) => Array.from({ length }, (_, i) => 3 + ((i + offset) % period));

describe('speculative decoding (scheduler, fake model)', () => {
  it('greedy: the same ids and finish reasons with drafts on and off; drafts verified, some accepted, some not', async () => {
    const requests = [
      { tokenIds: copyingPrompt(24, 5), sampling: { maxTokens: 40 } },
      { tokenIds: copyingPrompt(30, 3, 1), sampling: { maxTokens: 25, ignoreEos: false, stopTokenIds: [4] } },
      { tokenIds: copyingPrompt(12, 4), sampling: { maxTokens: 17, n: 3, temperature: 0.8, seed: 7 } },
      { tokenIds: copyingPrompt(20, 6), sampling: { maxTokens: 12, logprobs: 2, ignoreEos: false } },
    ];
    const off = await serve(12, false, requests);
    const on = await serve(12, true, requests);
    expect(on.outputs).toEqual(off.outputs);
    expect(on.finishes).toEqual(off.finishes);
    expect(on.logprobs).toEqual(off.logprobs);
    expect(off.verifySteps).toBe(0);
    expect(on.verifySteps).toBeGreaterThan(10);
    expect(on.accepted).toBeGreaterThan(0);
    expect(on.accepted).toBeLessThan(on.drafted);
    // max_tokens holds exactly: no verification emits past it.
    expect(on.outputs[0][0]).toHaveLength(40);
    expect(on.outputs[2].map((ids) => ids.length)).toEqual([17, 17, 17]);
  });

  it('sampling: 6000 seeds give the exact distribution of the first three ids (chi-square, 63 df, < 103.4 = p 0.001) and the same ids as without drafts', async () => {
    const vocabSize = 4;
    const prompt = copyingPrompt(11, 4).map((id) => id % vocabSize);
    const seeds = 6000;
    const requests = Array.from({ length: seeds }, (_, seed) => ({ tokenIds: prompt, sampling: { maxTokens: 3, temperature: 2, seed } }));
    const on = await serve(vocabSize, true, requests);
    const off = await serve(vocabSize, false, requests);
    expect(on.outputs).toEqual(off.outputs);
    expect(on.verifySteps).toBe(seeds); // each request verified one draft behind its first id
    expect(on.accepted).toBeGreaterThan(seeds / 20);
    expect(on.accepted).toBeLessThan(seeds);
    // The exact distribution at temperature 2, in float64.
    const softmax = (logits: Float32Array) => {
      const max = Math.max(...logits);
      const weights = Array.from(logits, (value) => Math.exp((value - max) / 2));
      const total = weights.reduce((a, b) => a + b, 0);
      return weights.map((weight) => weight / total);
    };
    const counts = new Map<string, number>();
    for (const [ids] of on.outputs) counts.set(ids.join(','), (counts.get(ids.join(',')) ?? 0) + 1);
    let chiSquare = 0;
    const p1 = softmax(fakeLogits(prompt, vocabSize));
    for (let a = 0; a < vocabSize; a++) {
      const p2 = softmax(fakeLogits([...prompt, a], vocabSize));
      for (let b = 0; b < vocabSize; b++) {
        const p3 = softmax(fakeLogits([...prompt, a, b], vocabSize));
        for (let c = 0; c < vocabSize; c++) {
          const expected = seeds * p1[a] * p2[b] * p3[c];
          const observed = counts.get(`${a},${b},${c}`) ?? 0;
          chiSquare += (observed - expected) ** 2 / expected;
        }
      }
    }
    expect(chiSquare).toBeLessThan(103.4);
  });

  it('a second turn reuses the first turn kept in the prefix cache after its drafts were rolled back', async () => {
    const turns = async (speculative: boolean) => {
      const engine = new FakeEngine({ vocabSize: 12, maxSequences: 8, speculativeTokens: K });
      const events: GenerateEvent[] = [];
      const scheduler = new Scheduler(engine, { ...LIMITS, speculativeTokens: speculative ? K : 0 }, (_id, event) => events.push(event));
      const sampling = { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens: 30, seed: 1 };
      const first = copyingPrompt(20, 5);
      scheduler.submit({ id: 1, tokenIds: first, sampling });
      while (await scheduler.step());
      const answer = events.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : []));
      events.length = 0;
      scheduler.submit({ id: 2, tokenIds: [...first, ...answer, 3, 4, 5], sampling });
      while (await scheduler.step());
      const end = events.find((event) => event.event === 'end');
      return {
        answer,
        second: events.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : [])),
        cached: end?.event === 'end' ? end.data.usage.cachedTokens : -1,
        stats: scheduler.stats(),
      };
    };
    const [off, on] = [await turns(false), await turns(true)];
    expect(on.stats.speculativeDrafted).toBeGreaterThan(on.stats.speculativeAccepted);
    expect([on.answer, on.second]).toEqual([off.answer, off.second]);
    expect(on.cached).toBe(off.cached);
    expect(on.cached).toBeGreaterThan(20);
  });

  it('a sequence without repeats never verifies (drafts cost nothing there)', async () => {
    const run = await serve(64, true, [{ tokenIds: [3, 4, 5, 6, 7, 8], sampling: { maxTokens: 1 } }]);
    expect(run.drafted).toBe(0);
    expect(run.verifySteps).toBe(0);
  });
});
