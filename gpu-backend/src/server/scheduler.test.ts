import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type GenerateEvent, type SamplingParams } from '../../../shared/protocol';
import { FakeEngine } from './fake-engine';
import { Scheduler, type SchedulerLimits } from './scheduler';
import { fakeGreedy } from './test-support';

const VOCAB = 64;
/** Independent reference: greedy decoding straight from the fake model's logits. */
const fakeGreedyOf = (prompt: number[], maxTokens: number) => fakeGreedy(prompt, maxTokens, VOCAB);
const LIMITS: SchedulerLimits = { maxRunning: 8, maxBatchedTokens: 64, prefixCacheSize: 0, prefixBlockTokens: 4, prefillStallFactor: 0, prefillMinTokens: 8 };

function promptOf(length: number, salt: number): number[] {
  return Array.from({ length }, (_, i) => 3 + ((i * 7 + salt * 13) % (VOCAB - 3)));
}

class Harness {
  readonly events = new Map<number, GenerateEvent[]>();
  readonly scheduler: Scheduler;
  private nextId = 1;

  constructor(
    readonly engine: FakeEngine,
    limits: Partial<SchedulerLimits> = {},
    clock?: () => number,
  ) {
    this.scheduler = new Scheduler(
      engine,
      { ...LIMITS, ...limits },
      (id, event) => {
        if (!this.events.has(id)) this.events.set(id, []);
        this.events.get(id)!.push(event);
      },
      clock,
    );
  }

  submit(tokenIds: number[], sampling: Partial<SamplingParams> = {}, prefixLength?: number): number {
    const id = this.nextId++;
    const full = { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, seed: 1, ...sampling };
    this.scheduler.submit({ id, tokenIds, sampling: { ...full, seed: full.seed ?? 1 }, prefixLength });
    return id;
  }

  async runUntilIdle(): Promise<void> {
    while (await this.scheduler.step());
  }

  outputOf(id: number, choice = 0): number[] {
    return (this.events.get(id) ?? []).flatMap((event) => (event.event === 'token' && event.data.choice === choice ? event.data.tokenIds : []));
  }

  endOf(id: number) {
    const last = this.events.get(id)?.at(-1);
    return last?.event === 'end' ? last.data.usage : null;
  }

  finishOf(id: number, choice = 0) {
    const finish = this.events.get(id)?.find((event) => event.event === 'finish' && event.data.choice === choice);
    return finish?.event === 'finish' ? finish.data.finishReason : null;
  }
}

describe('Scheduler with the fake engine', () => {
  it('greedy output equals the reference and the stream is token* -> finish -> end', async () => {
    const harness = new Harness(new FakeEngine({ vocabSize: VOCAB }));
    const prompt = promptOf(5, 1);
    const id = harness.submit(prompt, { maxTokens: 6 });
    await harness.runUntilIdle();
    expect(harness.outputOf(id)).toEqual(fakeGreedyOf(prompt, 6));
    expect(harness.events.get(id)!.map((event) => event.event)).toEqual([...Array(6).fill('token'), 'finish', 'end']);
    expect(harness.endOf(id)).toEqual({ promptTokens: 5, completionTokens: 6, cachedTokens: 0 });
    expect(harness.finishOf(id)).toBe('length');
  });

  it('requests join and leave at step boundaries, decodes batched in one step', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB });
    const harness = new Harness(engine);
    const a = harness.submit(promptOf(4, 1), { maxTokens: 3 });
    await harness.scheduler.step(); // A: prefill, first token
    await harness.scheduler.step(); // A: decode
    const b = harness.submit(promptOf(6, 2), { maxTokens: 3 });
    await harness.scheduler.step(); // A: decode (third token, leaves), B: prefill
    await harness.scheduler.step(); // B alone
    const [aId, bId] = [0, 1]; // engine sequence ids in creation order
    expect(engine.stepLog).toEqual([
      [{ sequenceId: aId, tokenCount: 4 }],
      [{ sequenceId: aId, tokenCount: 1 }],
      [
        { sequenceId: aId, tokenCount: 1 },
        { sequenceId: bId, tokenCount: 6 },
      ],
      [{ sequenceId: bId, tokenCount: 1 }],
    ]);
    expect(harness.finishOf(a)).toBe('length');
    await harness.runUntilIdle();
    expect(harness.outputOf(b)).toEqual(fakeGreedyOf(promptOf(6, 2), 3));
  });

  it('chunks a long prompt and interleaves it with running decodes', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB });
    const harness = new Harness(engine, { maxBatchedTokens: 8 });
    const a = harness.submit(promptOf(3, 1), { maxTokens: 12 });
    await harness.scheduler.step();
    const longPrompt = promptOf(30, 3);
    const b = harness.submit(longPrompt, { maxTokens: 2 });
    const before = harness.outputOf(a).length;
    for (let i = 0; i < 5; i++) await harness.scheduler.step();
    // Every step carried A's decode plus at most 7 prompt tokens of B: 7 + 7 + 7 + 7 + 2 = 30.
    expect(engine.stepLog.slice(1).map((items) => items.map((item) => item.tokenCount))).toEqual([
      [1, 7],
      [1, 7],
      [1, 7],
      [1, 7],
      [1, 2],
    ]);
    expect(harness.outputOf(a).length).toBe(before + 5);
    expect(harness.outputOf(b).length).toBe(1);
    await harness.runUntilIdle();
    expect(harness.outputOf(a)).toEqual(fakeGreedyOf(promptOf(3, 1), 12));
    expect(harness.outputOf(b)).toEqual(fakeGreedyOf(longPrompt, 2));
  });

  it('sizes prefill chunks from measured step times so running streams stall at most ~stallFactor', async () => {
    // Virtual time: a decode run costs 100 ms, a prefill run 40 ms + 5 ms per token (single-token
    // items ride with the decodes). With stall factor 1.5 the chunk settles at (150 - 40) / 5 = 22.
    let now = 0;
    const engine = new FakeEngine({
      vocabSize: VOCAB,
      beforeStep: async (items) => {
        if (items.some((item) => item.tokenIds.length === 1)) now += 0.1;
        for (const item of items) if (item.tokenIds.length > 1) now += 0.04 + 0.005 * item.tokenIds.length;
      },
    });
    const harness = new Harness(engine, { maxBatchedTokens: 512, prefillStallFactor: 1.5, prefillMinTokens: 8 }, () => now);
    const streams = [1, 2, 3, 4].map((salt) => harness.submit(promptOf(4, salt), { maxTokens: 200 }));
    for (let i = 0; i < 3; i++) await harness.scheduler.step();
    const long = harness.submit(promptOf(1000, 5), { maxTokens: 1 });
    const stepTimes: number[] = [];
    while (harness.outputOf(long).length === 0) {
      const before = now;
      await harness.scheduler.step();
      stepTimes.push(now - before);
    }
    const chunks = engine.stepLog.slice(3).map((items) => items.find((item) => item.tokenCount > 1)?.tokenCount ?? 0);
    // Starts from what the first prompts' prefill suggested (10 tokens), climbs to the fixed point.
    expect(chunks[0]).toBeLessThan(15);
    expect(chunks.slice(20, -1).every((chunk) => chunk >= 21 && chunk <= 22)).toBe(true);
    expect(Math.max(...stepTimes)).toBeLessThanOrEqual(0.1 + 0.15 + 1e-9);
    expect(chunks.length).toBeLessThan(60); // ~50 steps, not the 125 of minimum-size chunks
    expect(streams.every((id) => harness.outputOf(id).length === 3 + chunks.length)).toBe(true); // a token every step
  });

  it('an engine failure ends the requests of that step with an error event and frees their sequences', async () => {
    let failNext = false;
    const engine = new FakeEngine({
      vocabSize: VOCAB,
      beforeStep: async () => {
        if (failNext) {
          failNext = false;
          throw new Error('device lost');
        }
      },
    });
    const harness = new Harness(engine);
    const doomed = harness.submit(promptOf(4, 1), { maxTokens: 10 });
    await harness.scheduler.step();
    failNext = true;
    await harness.scheduler.step();
    const events = harness.events.get(doomed)!;
    const error = events.find((event) => event.event === 'error');
    expect(error?.event === 'error' && error.data.code).toBe('internal_error');
    expect(engine.freeSequences()).toBe(8);
    const next = harness.submit(promptOf(4, 2), { maxTokens: 3 });
    await harness.runUntilIdle();
    expect(harness.outputOf(next)).toEqual(fakeGreedyOf(promptOf(4, 2), 3));
  });

  it('admits no more than maxRunning choices; the rest wait their turn', async () => {
    const harness = new Harness(new FakeEngine({ vocabSize: VOCAB }), { maxRunning: 2 });
    const ids = [1, 2, 3].map((salt) => harness.submit(promptOf(4, salt), { maxTokens: 4 }));
    await harness.scheduler.step();
    expect(harness.scheduler.running.length).toBe(2);
    expect(harness.scheduler.waiting.length).toBe(1);
    await harness.runUntilIdle();
    ids.forEach((id, i) => expect(harness.outputOf(id)).toEqual(fakeGreedyOf(promptOf(4, i + 1), 4)));
  });

  it('cancellation frees every engine sequence: waiting, mid-prefill and mid-decode', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB, maxSequences: 8 });
    const initial = engine.freeSequences();
    const harness = new Harness(engine, { maxRunning: 3, maxBatchedTokens: 8 });
    const decoding = harness.submit(promptOf(3, 1), { maxTokens: 50, n: 2 });
    const prefilling = harness.submit(promptOf(40, 2), { maxTokens: 5 });
    const waiting = harness.submit(promptOf(3, 3), { maxTokens: 5 });
    await harness.scheduler.step();
    await harness.scheduler.step();
    expect(harness.outputOf(decoding).length).toBeGreaterThan(0);
    expect(harness.outputOf(prefilling)).toEqual([]);
    expect(harness.scheduler.waiting.length).toBe(1);
    for (const id of [decoding, prefilling, waiting]) harness.scheduler.cancel(id);
    await harness.scheduler.step();
    expect(engine.freeSequences()).toBe(initial);
    expect(harness.scheduler.hasWork()).toBe(false);
    for (const id of [decoding, prefilling, waiting]) expect(harness.events.get(id)!.at(-1)!.event).toBe('end');
    expect([harness.finishOf(decoding, 0), harness.finishOf(decoding, 1), harness.finishOf(prefilling), harness.finishOf(waiting)]).toEqual([
      'abort',
      'abort',
      'abort',
      'abort',
    ]);
  });

  it('n > 1 prefills the prompt once and forks; seeded choices differ, greedy ones agree', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB });
    const harness = new Harness(engine);
    const prompt = promptOf(10, 4);
    const greedy = harness.submit(prompt, { maxTokens: 5, n: 3 });
    await harness.runUntilIdle();
    const prefilledTokens = engine.stepLog
      .flat()
      .filter((item) => item.tokenCount > 1)
      .reduce((sum, item) => sum + item.tokenCount, 0);
    expect(prefilledTokens).toBe(10);
    for (const choice of [0, 1, 2]) expect(harness.outputOf(greedy, choice)).toEqual(fakeGreedyOf(prompt, 5));
    expect(harness.endOf(greedy)!.completionTokens).toBe(15);
    const sampled = harness.submit(prompt, { maxTokens: 8, n: 2, temperature: 1, seed: 9 });
    await harness.runUntilIdle();
    expect(harness.outputOf(sampled, 0)).not.toEqual(harness.outputOf(sampled, 1));
    expect(engine.freeSequences()).toBe(8);
  });

  it('stops at a stop id (not streamed, counted) and at EOS unless ignoreEos', async () => {
    const prompt = promptOf(6, 5);
    const reference = fakeGreedyOf(prompt, 6);
    const harness = new Harness(new FakeEngine({ vocabSize: VOCAB, eosTokenId: reference[3] }));
    const stopped = harness.submit(prompt, { maxTokens: 6, stopTokenIds: [reference[2]] });
    const eos = harness.submit(prompt, { maxTokens: 6, ignoreEos: false });
    const ignored = harness.submit(prompt, { maxTokens: 6, ignoreEos: true });
    await harness.runUntilIdle();
    expect(harness.outputOf(stopped)).toEqual(reference.slice(0, 2));
    expect(harness.finishOf(stopped)).toBe('stop');
    expect(harness.endOf(stopped)!.completionTokens).toBe(3);
    expect(harness.outputOf(eos)).toEqual(reference.slice(0, 3));
    expect(harness.outputOf(ignored)).toEqual(reference);
  });

  it('seeded sampling gives the same ids alone and among other requests', async () => {
    const prompt = promptOf(7, 6);
    const sampling = { temperature: 0.8, topP: 0.9, topK: 40, seed: 1234, maxTokens: 10 };
    const alone = new Harness(new FakeEngine({ vocabSize: VOCAB }));
    const soloId = alone.submit(prompt, sampling);
    await alone.runUntilIdle();
    const crowded = new Harness(new FakeEngine({ vocabSize: VOCAB }), { maxBatchedTokens: 12 });
    crowded.submit(promptOf(20, 7), { temperature: 1, seed: 5, maxTokens: 6 });
    crowded.submit(promptOf(3, 8), { temperature: 0.7, seed: 6, maxTokens: 14 });
    await crowded.scheduler.step();
    const inCrowd = crowded.submit(prompt, sampling);
    crowded.submit(promptOf(9, 9), { temperature: 1.2, seed: 7, maxTokens: 3 });
    await crowded.runUntilIdle();
    expect(crowded.outputOf(inCrowd)).toEqual(alone.outputOf(soloId));
    expect(new Set(alone.outputOf(soloId)).size).toBeGreaterThan(3); // really sampled, not stuck
  });
});

describe('Scheduler prefix cache', () => {
  const system = promptOf(40, 10);
  const question = (salt: number) => [...system, ...promptOf(6, salt)];

  it('a marked prefix is reused: same output as without the cache, cachedTokens reported', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB });
    const cached = new Harness(engine, { prefixCacheSize: 2 });
    cached.submit(question(1), { maxTokens: 4 }, system.length);
    await cached.runUntilIdle();
    const hit = cached.submit(question(2), { maxTokens: 4 }, system.length);
    const stepsBefore = engine.stepLog.length;
    await cached.runUntilIdle();
    expect(cached.endOf(hit)!.cachedTokens).toBe(40);
    expect(engine.stepLog[stepsBefore][0].tokenCount).toBe(6 - 1); // only the question, minus its snapshot token
    expect(cached.scheduler.prefixCache.hits).toBe(1);

    const plain = new Harness(new FakeEngine({ vocabSize: VOCAB }));
    const miss = plain.submit(question(2), { maxTokens: 4 });
    await plain.runUntilIdle();
    expect(cached.outputOf(hit)).toEqual(plain.outputOf(miss));
    expect(cached.outputOf(hit)).toEqual(fakeGreedyOf(question(2), 4));
    expect(plain.endOf(miss)!.cachedTokens).toBe(0);
  });

  it('a later turn reuses the previous prompt and answer; a re-tokenized answer or another question, their shared head in whole blocks', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB });
    const harness = new Harness(engine, { prefixCacheSize: 4 });
    const first = harness.submit(question(1), { maxTokens: 3 });
    await harness.runUntilIdle();
    const second = harness.submit(question(2), { maxTokens: 8 }); // question(1) and (2) part at id 40
    await harness.runUntilIdle();
    const answer = harness.outputOf(second);
    const turn = [...question(2), ...answer, ...promptOf(5, 4)];
    const third = harness.submit(turn, { maxTokens: 3 });
    await harness.runUntilIdle();
    // The edge re-tokenized the answer differently from its sixth id on: 46 + 5 ids agree, 48 in whole blocks of 4
    // (more than the 45 of the snapshot of request 2's prompt minus its last id, which begins this prompt whole).
    const retokenized = [...question(2), ...answer.slice(0, 5), (answer[5] + 1) % VOCAB, ...promptOf(5, 4)];
    const fourth = harness.submit(retokenized, { maxTokens: 3 });
    await harness.runUntilIdle();
    expect(harness.endOf(first)!.cachedTokens).toBe(0);
    expect(harness.endOf(second)!.cachedTokens).toBe(40);
    // Request 2's row holds its prompt and its answer but the last id (sampled, never fed).
    expect(harness.endOf(third)!.cachedTokens).toBe(question(2).length + answer.length - 1);
    expect(harness.endOf(fourth)!.cachedTokens).toBe(48);
    expect(harness.outputOf(second)).toEqual(fakeGreedyOf(question(2), 8));
    expect(harness.outputOf(third)).toEqual(fakeGreedyOf(turn, 3));
    expect(harness.outputOf(fourth)).toEqual(fakeGreedyOf(retokenized, 3));
  });

  it('keeps no answer cut short: an aborted choice gives its row back, and a cache of size 0 keeps nothing', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB });
    const harness = new Harness(engine, { prefixCacheSize: 4 });
    const cut = harness.submit(question(1), { maxTokens: 50 });
    for (let step = 0; step < 4; step++) await harness.scheduler.step();
    const entries = harness.scheduler.prefixCache.size; // prefill snapshots only
    harness.scheduler.cancel(cut);
    await harness.runUntilIdle();
    expect(harness.finishOf(cut)).toBe('abort');
    expect(harness.scheduler.prefixCache.size).toBe(entries);
    expect(engine.freeSequences()).toBe(8 - entries);
    const off = new Harness(new FakeEngine({ vocabSize: VOCAB }));
    off.submit(question(1), { maxTokens: 3 });
    await off.runUntilIdle();
    expect([off.scheduler.prefixCache.size, off.engine.freeSequences()]).toEqual([0, 8]);
  });

  it('snapshots give way to requests when the engine runs out of sequences', async () => {
    const engine = new FakeEngine({ vocabSize: VOCAB, maxSequences: 3 });
    const harness = new Harness(engine, { prefixCacheSize: 3, maxRunning: 3 });
    harness.submit(question(1), { maxTokens: 2 }, 40);
    await harness.runUntilIdle();
    expect(harness.scheduler.prefixCache.size).toBeGreaterThan(0);
    const ids = [2, 3, 4].map((salt) => harness.submit(promptOf(5, salt), { maxTokens: 3 }));
    await harness.runUntilIdle();
    ids.forEach((id, i) => expect(harness.outputOf(id)).toEqual(fakeGreedyOf(promptOf(5, i + 2), 3)));
    expect(engine.freeSequences() + harness.scheduler.prefixCache.size).toBe(3);
  });
});
