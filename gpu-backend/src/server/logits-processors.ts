// Small composable pieces of sampling: penalties and temperature rewrite a logits row in place;
// truncations (top-k, top-p, min-p) narrow a sorted candidate list. The sampler chains them.

/** What the penalties need to know about a choice so far; kept up to date by the sequence. */
export interface GenerationHistory {
  /** Distinct ids of the prompt and the output (repetition penalty, vLLM/Hugging Face semantics). */
  readonly seenTokenIds: ReadonlySet<number>;
  /** How often each id was generated (output only: OpenAI presence/frequency semantics). */
  readonly outputCounts: ReadonlyMap<number, number>;
}

export type LogitsProcessor = (logits: Float32Array, history: GenerationHistory) => void;

/**
 * Hugging Face / vLLM repetition penalty: every id seen in prompt or output has a positive logit
 * divided by `penalty` and a negative one multiplied by it, so both become less likely for penalty > 1.
 */
export function repetitionPenalty(penalty: number): LogitsProcessor {
  return (logits, history) => {
    for (const tokenId of history.seenTokenIds) {
      const value = logits[tokenId];
      logits[tokenId] = value > 0 ? value / penalty : value * penalty;
    }
  };
}

/** OpenAI penalties over generated ids: logit -= count * frequency + (count > 0 ? presence : 0). */
export function frequencyPresencePenalty(frequency: number, presence: number): LogitsProcessor {
  return (logits, history) => {
    for (const [tokenId, count] of history.outputCounts) {
      logits[tokenId] -= count * frequency + presence;
    }
  };
}

export function temperatureScaling(temperature: number): LogitsProcessor {
  const inverse = 1 / temperature;
  return (logits) => {
    for (let i = 0; i < logits.length; i++) logits[i] *= inverse;
  };
}

/**
 * Ids sorted by logit, highest first (ties: lower id first), the first `count` of them still allowed.
 * Only ids that can matter are listed: a truncation that needs more asks `widen`.
 */
export interface Candidates {
  ids: number[];
  count: number;
}

export type Truncation = (logits: Float32Array, candidates: Candidates) => void;

export function topK(k: number): Truncation {
  return (_logits, candidates) => {
    candidates.count = Math.min(candidates.count, k);
  };
}

/** Keeps the smallest head of the sorted list whose probability mass reaches `p` (at least one id). */
export function topP(p: number): Truncation {
  return (logits, candidates) => {
    const { ids } = candidates;
    const maxLogit = logits[ids[0]];
    let total = 0;
    for (let i = 0; i < candidates.count; i++) total += Math.exp(logits[ids[i]] - maxLogit);
    let mass = 0;
    for (let i = 0; i < candidates.count; i++) {
      mass += Math.exp(logits[ids[i]] - maxLogit) / total;
      // Tolerance: float sums of a distribution whose mass is exactly p must still stop here.
      if (mass >= p - 1e-9) {
        candidates.count = i + 1;
        return;
      }
    }
  };
}

/** Keeps ids whose probability is at least `minP` times the most likely one's: logit >= max + ln(minP). */
export function minP(minProbability: number): Truncation {
  const offset = Math.log(minProbability);
  return (logits, candidates) => {
    const threshold = logits[candidates.ids[0]] + offset;
    let count = 0;
    while (count < candidates.count && logits[candidates.ids[count]] >= threshold) count++;
    candidates.count = Math.max(1, count);
  };
}

/** Index of the largest value; the lowest id wins a tie (greedy decoding is reproducible). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

function sortedAbove(logits: Float32Array, threshold: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] >= threshold) ids.push(i);
  return ids.sort((a, b) => logits[b] - logits[a] || a - b);
}

/**
 * The sorted candidates a chain of truncations needs. Sorting 32k ids per token is too slow for a
 * batch, so only ids above a threshold are sorted; the threshold is lowered until the list holds
 * `need.count` ids, `need.mass` of the probability and every id within `need.logitGap` of the best
 * (what top-k, top-p and min-p can reach), which keeps the result exact: every id left out is less likely than every id listed.
 */
export function sortedCandidates(logits: Float32Array, need: { count: number; mass: number; logitGap: number }): Candidates {
  const maxLogit = logits[argmax(logits)];
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp(logits[i] - maxLogit);
  const minCount = Math.min(need.count, logits.length);
  for (let gap = Math.max(8, need.logitGap); gap < 1e3; gap *= 2) {
    const ids = sortedAbove(logits, maxLogit - gap);
    let mass = 0;
    for (const id of ids) mass += Math.exp(logits[id] - maxLogit);
    if (ids.length >= minCount && mass / total >= need.mass) return { ids, count: ids.length };
  }
  // Every id with a finite logit: ids a grammar masked (-Infinity) are never candidates.
  const ids = sortedAbove(logits, -Number.MAX_VALUE);
  return { ids, count: ids.length };
}
