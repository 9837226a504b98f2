// A request whose grammar fails inside the step loop ends alone, with an in-band error; the requests beside
// it in the same steps finish unchanged and the scheduler serves the next one. The failing grammar is built
// past the schema check on purpose (`{"$ref": "#"}` compiles to `root ::= root`, which allows no token),
// the way a schema the check does not foresee would reach the engine.

import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type GenerateEvent } from '../../../../shared/protocol';
import { FakeEngine } from '../fake-engine';
import { Scheduler } from '../scheduler';
import { fakeGreedy } from '../test-support';
import type { GrammarSource } from './grammar-source';
import { GrammarState } from './grammar-state';
import { fixtureCompilers, fixtureVocabulary } from './test-vocabularies';

const V1 = fixtureVocabulary('v1');
const LIMITS = { maxRunning: 8, maxBatchedTokens: 64, prefixCacheSize: 0, prefixBlockTokens: 4, prefillStallFactor: 0, prefillMinTokens: 8 };

function unchecked(schema: unknown): GrammarSource {
  const text = JSON.stringify(schema);
  return { schema: text, strict: true, toolCalls: null, key: JSON.stringify([text, true, null]) };
}

describe('a grammar that fails in the step loop', () => {
  it('ends only its own request; the neighbour and the next request are served exactly', async () => {
    const compilers = await fixtureCompilers('v1');
    const stuck = unchecked({ $ref: '#' });
    const states = [await GrammarState.create(compilers.xgrammar, await compilers.compile(stuck), stuck, null, V1.vocabSize)];
    const events = new Map<number, GenerateEvent[]>();
    const scheduler = new Scheduler(new FakeEngine({ vocabSize: V1.vocabSize }), LIMITS, (id, event) => events.set(id, [...(events.get(id) ?? []), event]));
    const sampling = { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens: 6, seed: 1 };
    const prompt = [1, 400, 500, 600];
    scheduler.submit({ id: 1, tokenIds: prompt, sampling }, states);
    scheduler.submit({ id: 2, tokenIds: prompt, sampling });
    while (await scheduler.step());
    scheduler.submit({ id: 3, tokenIds: [1, 700], sampling });
    while (await scheduler.step());

    const kinds = (id: number) => events.get(id)!.map((event) => event.event);
    expect(kinds(1)).toEqual(['error', 'finish', 'end']);
    const tokens = (id: number) => events.get(id)!.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : []));
    expect(tokens(2)).toEqual(fakeGreedy(prompt, 6, V1.vocabSize));
    expect(tokens(3)).toEqual(fakeGreedy([1, 700], 6, V1.vocabSize));
    expect(scheduler.stats().freeSequences).toBe(new FakeEngine({ vocabSize: V1.vocabSize }).freeSequences());
  });
});
