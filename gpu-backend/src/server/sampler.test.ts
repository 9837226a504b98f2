import { describe, expect, it } from 'vitest';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../../shared/protocol';
import {
  argmax,
  frequencyPresencePenalty,
  minP,
  repetitionPenalty,
  sortedCandidates,
  temperatureScaling,
  topK,
  topP,
  type GenerationHistory,
} from './logits-processors';
import { Prng } from './prng';
import { logprobsOf, Sampler } from './sampler';

const NO_HISTORY: GenerationHistory = { seenTokenIds: new Set(), outputCounts: new Map() };

function logitsOfProbabilities(probabilities: number[]): Float32Array {
  return Float32Array.from(probabilities, (p) => Math.log(p));
}

function params(overrides: Partial<SamplingParams>): SamplingParams {
  return { ...DEFAULT_SAMPLING, ...overrides };
}

/** Empirical frequencies of `draws` samples. */
function frequencies(sampler: Sampler, logits: Float32Array, draws: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampler.sample(logits, NO_HISTORY).tokenId]++;
  return counts.map((count) => count / draws);
}

describe('logits processors (hand-computed)', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen ids', () => {
    const logits = Float32Array.from([2, -1, 0.5, 3]);
    repetitionPenalty(2)(logits, { seenTokenIds: new Set([0, 1]), outputCounts: new Map() });
    expect([...logits]).toEqual([1, -2, 0.5, 3]);
  });

  it('frequency and presence penalties subtract count * frequency + presence from generated ids', () => {
    const logits = Float32Array.from([1, 1, 1]);
    frequencyPresencePenalty(0.5, 0.25)(logits, {
      seenTokenIds: new Set(),
      outputCounts: new Map([
        [0, 2],
        [2, 1],
      ]),
    });
    expect(logits[0]).toBeCloseTo(1 - 1 - 0.25, 6);
    expect(logits[1]).toBe(1);
    expect(logits[2]).toBeCloseTo(1 - 0.5 - 0.25, 6);
  });

  it('temperature divides every logit', () => {
    const logits = Float32Array.from([1, -2, 4]);
    temperatureScaling(0.5)(logits, NO_HISTORY);
    expect([...logits]).toEqual([2, -4, 8]);
  });

  it('top-k, top-p and min-p keep the hand-computed sets', () => {
    // probabilities 0.5, 0.3, 0.15, 0.05 on ids 2, 0, 3, 1
    const logits = logitsOfProbabilities([0.3, 0.05, 0.5, 0.15]);
    const sorted = () => sortedCandidates(logits, { count: 4, mass: 1, logitGap: 0 });
    expect(sorted().ids).toEqual([2, 0, 3, 1]);
    const k = sorted();
    topK(2)(logits, k);
    expect(k.ids.slice(0, k.count)).toEqual([2, 0]);
    const p = sorted();
    topP(0.75)(logits, p); // 0.5 < 0.75 <= 0.8
    expect(p.ids.slice(0, p.count)).toEqual([2, 0]);
    const p2 = sorted();
    topP(0.81)(logits, p2); // 0.8 < 0.81 <= 0.95
    expect(p2.ids.slice(0, p2.count)).toEqual([2, 0, 3]);
    const m = sorted();
    minP(0.28)(logits, m); // keep p >= 0.14: 0.15 stays, 0.05 goes
    expect(m.ids.slice(0, m.count)).toEqual([2, 0, 3]);
  });

  it('argmax breaks ties towards the lowest id', () => {
    expect(argmax(Float32Array.from([1, 3, 0, 3, 3]))).toBe(1);
  });

  it('sorted candidates are exact even when the threshold search widens', () => {
    const random = new Prng(11);
    const logits = Float32Array.from({ length: 5000 }, () => (random.nextFloat() - 0.5) * 4);
    const full = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b);
    const partial = sortedCandidates(logits, { count: 1, mass: 0.99, logitGap: 0 });
    expect(partial.ids).toEqual(full.slice(0, partial.ids.length));
    let mass = 0;
    const max = logits[full[0]];
    const total = full.reduce((sum, id) => sum + Math.exp(logits[id] - max), 0);
    for (const id of partial.ids) mass += Math.exp(logits[id] - max) / total;
    expect(mass).toBeGreaterThanOrEqual(0.99);
  });
});

describe('Sampler', () => {
  it('temperature 0 is greedy with the lowest id on ties, whatever the seed', () => {
    const logits = Float32Array.from([0, 5, 1, 5]);
    for (const seed of [1, 2, 3]) {
      expect(new Sampler(params({ temperature: 0 }), new Prng(seed)).sample(logits, NO_HISTORY).tokenId).toBe(1);
    }
  });

  it('greedy applies penalties first: a repeated argmax loses to the runner-up', () => {
    const logits = Float32Array.from([0, 2, 1.5]);
    const history = { seenTokenIds: new Set([1]), outputCounts: new Map([[1, 1]]) };
    expect(new Sampler(params({ temperature: 0, repetitionPenalty: 1.5 }), new Prng(1)).sample(logits, history).tokenId).toBe(2);
    expect(new Sampler(params({ temperature: 0, presencePenalty: 0.6 }), new Prng(1)).sample(logits, history).tokenId).toBe(2);
    expect(new Sampler(params({ temperature: 0 }), new Prng(1)).sample(logits, history).tokenId).toBe(1);
    expect(logits[1]).toBe(2); // the shared row is not modified
  });

  it('samples the softmax distribution at temperature 1 and the sharpened one at 0.5', () => {
    const probabilities = [0.1, 0.2, 0.3, 0.4];
    const logits = logitsOfProbabilities(probabilities);
    const plain = frequencies(new Sampler(params({}), new Prng(5)), logits, 40_000);
    plain.forEach((f, i) => expect(Math.abs(f - probabilities[i])).toBeLessThan(0.01));
    // T = 0.5 squares the probabilities: 1, 4, 9, 16 over 30
    const sharp = frequencies(new Sampler(params({ temperature: 0.5 }), new Prng(6)), logits, 40_000);
    [1, 4, 9, 16].forEach((w, i) => expect(Math.abs(sharp[i] - w / 30)).toBeLessThan(0.01));
  });

  it('top-p renormalises over the kept set; top-k and min-p likewise', () => {
    const logits = logitsOfProbabilities([0.3, 0.05, 0.5, 0.15]);
    const topPFreq = frequencies(new Sampler(params({ topP: 0.75 }), new Prng(7)), logits, 40_000);
    expect(topPFreq[1] + topPFreq[3]).toBe(0);
    expect(Math.abs(topPFreq[2] - 0.5 / 0.8)).toBeLessThan(0.01);
    const topKFreq = frequencies(new Sampler(params({ topK: 3 }), new Prng(8)), logits, 40_000);
    expect(topKFreq[1]).toBe(0);
    expect(Math.abs(topKFreq[3] - 0.15 / 0.95)).toBeLessThan(0.01);
    const minPFreq = frequencies(new Sampler(params({ minP: 0.5 }), new Prng(9)), logits, 40_000);
    expect(minPFreq[1] + minPFreq[3]).toBe(0);
    expect(Math.abs(minPFreq[0] - 0.3 / 0.8)).toBeLessThan(0.01);
  });

  it('the same seed gives the same draws; another seed other draws', () => {
    const logits = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i));
    const run = (seed: number) => {
      const sampler = new Sampler(params({ temperature: 0.9, topP: 0.95 }), new Prng(seed));
      return Array.from({ length: 30 }, () => sampler.sample(logits, NO_HISTORY).tokenId);
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
  });

  it('logprobs are the log-softmax of the processed row with alternatives most likely first', () => {
    const logits = logitsOfProbabilities([0.25, 0.5, 0.25]);
    const result = logprobsOf(logits, 2, 2);
    expect(result.logprob).toBeCloseTo(Math.log(0.25), 6);
    expect(result.top.map((t) => t.tokenId)).toEqual([1, 0]);
    expect(result.top[0].logprob).toBeCloseTo(Math.log(0.5), 6);
    const sampled = new Sampler(params({ temperature: 0, logprobs: 1 }), new Prng(1)).sample(logits, NO_HISTORY);
    expect(sampled.tokenId).toBe(1);
    expect(sampled.logprob!.logprob).toBeCloseTo(Math.log(0.5), 6);
    // temperature 2 flattens: probabilities proportional to sqrt(p)
    const warm = new Sampler(params({ temperature: 2, logprobs: 0 }), new Prng(1)).sample(logits, NO_HISTORY);
    const weights = [0.5, Math.sqrt(0.5), 0.5];
    const total = weights.reduce((a, b) => a + b);
    expect(warm.logprob!.logprob).toBeCloseTo(Math.log(weights[warm.tokenId] / total), 5);
    expect(warm.logprob!.top).toEqual([]);
  });
});

describe('masked logits (a grammar set forbidden ids to -Infinity)', () => {
  const logits = Float32Array.from({ length: 200 }, (_, id) => (id % 50 === 7 ? (id % 3) * 0.5 : -Infinity)); // ids 7, 57, 107, 157 allowed
  const allowed = new Set([7, 57, 107, 157]);

  it.each([
    [{ temperature: 1 }],
    [{ temperature: 0.7, topK: 50 }], // top-k wider than the allowed ids
    [{ temperature: 1.3, topP: 0.999 }],
    [{ temperature: 1, minP: 0.001, repetitionPenalty: 1.3, frequencyPenalty: 0.5 }],
    [{ temperature: 0 }],
  ])('%j draws only allowed ids, and logprobs list only allowed ids', (overrides) => {
    const sampler = new Sampler(params({ ...overrides, logprobs: 8 }), new Prng(3, 0));
    const history: GenerationHistory = { seenTokenIds: new Set([7, 8]), outputCounts: new Map([[57, 2]]) };
    for (let draw = 0; draw < 300; draw++) {
      const { tokenId, logprob } = sampler.sample(logits, history);
      expect(allowed.has(tokenId)).toBe(true);
      expect(logprob!.top.map((entry) => entry.tokenId).every((id) => allowed.has(id))).toBe(true);
      expect(logprob!.top).toHaveLength(4);
      expect(Number.isFinite(logprob!.logprob)).toBe(true);
    }
  });
});
