// The engine side never runs XGrammar: grammars are compiled and matched in the grammar thread, the step loop
// only receives masks. If that thread goes away mid-request, the constrained request ends with an error and
// the unconstrained one beside it finishes unchanged.

import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type GenerateEvent, type GenerateResponse } from '../../../../shared/protocol';
import { createBackendApp } from '../app';
import { FakeEngine } from '../fake-engine';
import { GenerationClient } from '../generation-client';
import { Scheduler } from '../scheduler';
import { fakeGreedy } from '../test-support';
import { GrammarChecker } from './grammar-checker';
import { grammarSourceOf } from './grammar-source';
import { GrammarThread } from './grammar-thread';
import { TEST_TIME_LIMIT_MS, vocabularyFolder } from './test-vocabularies';
import { xgrammarLoadedInThisThread } from './xgrammar';

const VOCAB = 32000;
const SCHEMA = { type: 'object', properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer' } }, required: ['name', 'age'] };
let folder: string;

beforeAll(async () => {
  folder = await vocabularyFolder('grammar-thread');
});
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

function source() {
  const built = grammarSourceOf({ type: 'json_schema', schema: SCHEMA });
  if (!built.ok) throw new Error(built.message);
  return built.source;
}

describe('the grammar thread', () => {
  it('serves a schema request while the engine host (here: this thread) never loads XGrammar', async () => {
    // The engine host runs in this thread (inProcess); the check runs in its own thread.
    const client = GenerationClient.inProcess(
      { engine: { kind: 'fake', options: {} }, vocabularyDir: folder, limits: { prefixCacheSize: 0 } },
      new FakeEngine({ vocabSize: VOCAB }),
    );
    const checker = new GrammarChecker({ modelDir: folder, timeLimitMs: TEST_TIME_LIMIT_MS });
    try {
      await client.whenReady();
      const app = createBackendApp({ client, grammarChecker: checker });
      const body = { requestId: 'g', tokenIds: [1, 100, 200], sampling: { maxTokens: 64, seed: 3, n: 2 }, grammar: { type: 'json_schema', schema: SCHEMA } };
      const response = await app.request('/v1/generate', { method: 'POST', body: JSON.stringify({ ...body, stream: false }) });
      expect(response.status).toBe(200);
      const { choices } = (await response.json()) as GenerateResponse;
      expect(choices).toHaveLength(2);
      expect(xgrammarLoadedInThisThread()).toBe(false);
    } finally {
      await checker.close();
      await client.close();
    }
  });

  it('going away mid-request ends the constrained request with an error; its neighbour finishes exactly', async () => {
    const thread = new GrammarThread(folder, () => {});
    expect(await thread.start()).toMatchObject({ source: 'tokenizer.model', vocabSize: VOCAB });
    const states = await thread.prepare(source(), 1);
    const events = new Map<number, GenerateEvent[]>();
    const limits = { maxRunning: 8, maxBatchedTokens: 64, prefixCacheSize: 0, prefixBlockTokens: 4, prefillStallFactor: 0, prefillMinTokens: 8 };
    const scheduler = new Scheduler(new FakeEngine({ vocabSize: VOCAB }), limits, (id, event) => events.set(id, [...(events.get(id) ?? []), event]));
    const sampling = { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens: 12, seed: 1 };
    const prompt = [1, 400, 500, 600];
    scheduler.submit({ id: 1, tokenIds: prompt, sampling }, states);
    scheduler.submit({ id: 2, tokenIds: prompt, sampling });
    for (let step = 0; step < 3; step++) await scheduler.step();
    const kinds = (id: number) => (events.get(id) ?? []).map((event) => event.event);
    expect(kinds(1)).toContain('token'); // the constrained request was running on the thread's masks
    await thread.close();
    while (await scheduler.step());

    expect(kinds(1).slice(-3)).toEqual(['error', 'finish', 'end']);
    const tokens = (id: number) => events.get(id)!.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : []));
    expect(tokens(2)).toEqual(fakeGreedy(prompt, 12, VOCAB));
    await expect(thread.prepare(source(), 1)).rejects.toThrow(/closed/);
    expect(scheduler.stats().freeSequences).toBe(new FakeEngine({ vocabSize: VOCAB }).freeSequences());
  });
});
