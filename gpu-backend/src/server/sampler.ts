// Turns one logits row into the next token id of one choice: penalties, temperature, truncation,
// a draw from the choice's own seeded generator, and optional logprobs.
//
// Logprobs are the log-softmax of the logits after penalties and temperature (temperature 0 counts
// as 1), before top-k/top-p/min-p: the distribution the sampler drew from, without the -Infinity
// entries truncation would add (JSON cannot carry them, and alternatives stay meaningful). A grammar's
// mask comes before all of it: ids it forbids are outside that distribution and never listed.

import type { SampledLogprob, SamplingParams } from '../../../shared/protocol';
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
  type LogitsProcessor,
  type Truncation,
} from './logits-processors';
import type { Prng } from './prng';

export interface SampleResult {
  tokenId: number;
  logprob?: SampledLogprob;
}

export class Sampler {
  private readonly processors: LogitsProcessor[] = [];
  private readonly truncations: Truncation[] = [];
  private readonly need = { count: 1, mass: 0, logitGap: 0 };
  private readonly greedy: boolean;
  private scratch: Float32Array | null = null;

  constructor(
    private readonly params: SamplingParams,
    private readonly prng: Prng,
  ) {
    if (params.repetitionPenalty !== 1) this.processors.push(repetitionPenalty(params.repetitionPenalty));
    if (params.frequencyPenalty !== 0 || params.presencePenalty !== 0) {
      this.processors.push(frequencyPresencePenalty(params.frequencyPenalty, params.presencePenalty));
    }
    this.greedy = params.temperature === 0;
    if (this.greedy) return;
    if (params.temperature !== 1) this.processors.push(temperatureScaling(params.temperature));
    if (params.topK > 0) {
      this.truncations.push(topK(params.topK));
      this.need.count = params.topK;
    }
    if (params.topP < 1) {
      this.truncations.push(topP(params.topP));
      if (params.topK <= 0) this.need.mass = params.topP;
    }
    if (params.minP > 0) {
      this.truncations.push(minP(params.minP));
      this.need.logitGap = -Math.log(params.minP);
    }
  }

  /** `logits` ([vocabSize]) is not modified: choices of one prompt share the row. */
  sample(logits: Float32Array, history: GenerationHistory): SampleResult {
    let processed = logits;
    if (this.processors.length > 0) {
      this.scratch ??= new Float32Array(logits.length);
      this.scratch.set(logits);
      processed = this.scratch;
      for (const processor of this.processors) processor(processed, history);
    }
    const tokenId = this.greedy ? argmax(processed) : this.draw(processed);
    if (this.params.logprobs === undefined) return { tokenId };
    return { tokenId, logprob: logprobsOf(processed, tokenId, this.params.logprobs) };
  }

  private draw(logits: Float32Array): number {
    const u = this.prng.nextFloat();
    if (this.truncations.length === 0) {
      // Inverse CDF over the whole vocabulary in id order: no sort needed.
      const maxLogit = logits[argmax(logits)];
      let total = 0;
      for (let i = 0; i < logits.length; i++) total += Math.exp(logits[i] - maxLogit);
      let target = u * total;
      for (let i = 0; i < logits.length; i++) {
        target -= Math.exp(logits[i] - maxLogit);
        if (target < 0) return i;
      }
      return argmax(logits);
    }
    const candidates = sortedCandidates(logits, this.need);
    for (const truncation of this.truncations) truncation(logits, candidates);
    const maxLogit = logits[candidates.ids[0]];
    let total = 0;
    for (let i = 0; i < candidates.count; i++) total += Math.exp(logits[candidates.ids[i]] - maxLogit);
    let target = u * total;
    for (let i = 0; i < candidates.count; i++) {
      target -= Math.exp(logits[candidates.ids[i]] - maxLogit);
      if (target < 0) return candidates.ids[i];
    }
    return candidates.ids[candidates.count - 1];
  }
}

/** Log-softmax value of `tokenId` and the `topCount` most likely ids (ties: lower id first). */
export function logprobsOf(logits: Float32Array, tokenId: number, topCount: number): SampledLogprob {
  const maxLogit = logits[argmax(logits)];
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp(logits[i] - maxLogit);
  const logTotal = maxLogit + Math.log(total);
  const top: number[] = [];
  for (let i = 0; i < logits.length && topCount > 0; i++) {
    if (logits[i] === -Infinity) continue; // masked by a grammar: not part of the distribution drawn from
    if (top.length === topCount && logits[i] <= logits[top[top.length - 1]]) continue;
    let at = top.length;
    while (at > 0 && logits[i] > logits[top[at - 1]]) at--;
    top.splice(at, 0, i);
    if (top.length > topCount) top.pop();
  }
  return {
    tokenId,
    logprob: logits[tokenId] - logTotal,
    top: top.map((id) => ({ tokenId: id, logprob: logits[id] - logTotal })),
  };
}
