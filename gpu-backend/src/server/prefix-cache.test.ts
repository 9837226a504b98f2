// The prefix cache on the real engine with the trained stories260k checkpoints: later turns of a chat reuse
// the previous prompt and answer (sent back as generated, or re-tokenized differently), and every greedy id
// equals that of the same prompt served with no cache at all. Without a window, and with one that every
// answer's row wraps (swa16), where only whole entries are exact.

import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type GenerateEvent } from '../../../shared/protocol';
import { Engine } from '../model/runtime/engine';
import { Scheduler } from './scheduler';

const FIXTURES = process.env.FIXTURES_DIR ?? path.resolve(process.cwd(), '../shared/fixtures');
const BLOCK = 16;
const EOS = 2;
const textOf = (length: number, salt: number) => Array.from({ length }, (_, i) => ((i * 37 + salt * 101) % 500) + 3);

/** One scheduler serving requests one after another, as turns of a chat arrive. */
class Server {
  readonly scheduler: Scheduler;
  private readonly events = new Map<number, GenerateEvent[]>();
  private nextId = 1;

  constructor(engine: Engine, prefixCacheSize: number) {
    const limits = { maxRunning: 4, maxBatchedTokens: 64, prefixCacheSize, prefixBlockTokens: BLOCK, prefillStallFactor: 0, prefillMinTokens: 8 };
    this.scheduler = new Scheduler(engine, limits, (id, event) => this.events.set(id, [...(this.events.get(id) ?? []), event]));
  }

  async generate(tokenIds: number[], maxTokens: number): Promise<{ ids: number[]; cachedTokens: number }> {
    const id = this.nextId++;
    this.scheduler.submit({ id, tokenIds, sampling: { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens, seed: 1 } });
    while (await this.scheduler.step());
    const events = this.events.get(id) ?? [];
    const end = events.at(-1);
    if (end?.event !== 'end') throw new Error(`request ${id} did not end: ${JSON.stringify(end)}`);
    return { ids: events.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : [])), cachedTokens: end.data.usage.cachedTokens };
  }
}

for (const folder of ['stories260k', 'stories260k-swa16']) {
  describe(`prefix cache on ${folder}`, () => {
    let engine: Engine;
    beforeAll(async () => {
      const modelDir = path.join(FIXTURES, folder);
      engine = await Engine.load({ modelDir, dtype: 'fp32', executionProvider: 'cpu', intraOpThreads: 1, maxSequences: 8, onnxCacheDir: null });
    });
    afterAll(async () => {
      await engine?.dispose();
    });
    const windowed = folder.endsWith('swa16');
    // Every scheduler shares the engine's rows: give back what a test's cache kept.
    const servers: Server[] = [];
    const serve = (prefixCacheSize: number) => servers[servers.push(new Server(engine, prefixCacheSize)) - 1];
    afterEach(() => {
      for (const server of servers.splice(0)) server.scheduler.prefixCache.clear();
      expect(engine.freeSequences()).toBe(8);
    });

    it('turns 2 and 3 reuse the previous prompt and answer; greedy ids equal those computed without a cache', async () => {
      const cached = serve(4);
      const plain = serve(0);
      let prompt = [1, ...textOf(21, 1)];
      let previous = await cached.generate(prompt, 30);
      expect(previous.cachedTokens).toBe(0);
      for (const turn of [2, 3]) {
        // The template closes the answer with EOS and opens the next user message.
        const next = [...prompt, ...previous.ids, EOS, ...textOf(9, turn)];
        const served = await cached.generate(next, 20);
        // The row of the previous turn holds its prompt and answer but the last answer id (sampled, never fed).
        expect(served.cachedTokens).toBe(prompt.length + previous.ids.length - 1);
        expect(served.ids).toEqual((await plain.generate(next, 20)).ids);
        [prompt, previous] = [next, served];
      }
      expect(new Set(previous.ids).size).toBeGreaterThan(3);
    });

    it('an answer re-tokenized differently reuses what agrees, in whole blocks while the row is exact there', async () => {
      const cached = serve(4);
      const plain = serve(0);
      const prompt = [1, ...textOf(21, 5)];
      const { ids: answer } = await cached.generate(prompt, 30);
      const alternative = (answer[13] + 1) % 500;
      // The edge sent the answer back with its 14th id spelled otherwise: 22 + 13 = 35 ids agree.
      const next = [...prompt, ...answer.slice(0, 13), alternative, ...answer.slice(14), EOS, ...textOf(9, 6)];
      const served = await cached.generate(next, 20);
      // Two whole blocks of the answer's row without a window; with one, that row has wrapped (it cannot
      // be cut), and the snapshot of the first prompt minus its last id is the longest exact entry.
      expect(served.cachedTokens).toBe(windowed ? prompt.length - 1 : 2 * BLOCK);
      expect(served.ids).toEqual((await plain.generate(next, 20)).ids);
    });
  });
}
