// How many prompt tokens a step may prefill while streams are decoding. Prefill and decode cannot share
// one session.run (GQA takes S > 1 over a past only at batch 1), so every prefill token lengthens the
// step each running stream waits for. The budget keeps that stall near `stallFactor` x a plain decode
// step, learned from measured step times, so the limit follows the hardware instead of a constant.
//
// Model: a mixed step takes decode + F + c * p for p prefill tokens (F: the fixed cost of a prefill
// run, c: per token). Observing x = step - decode at chunk p gives an effective cost x / p = F / p + c,
// and the next chunk A / (F / p + c) (A = stallFactor * decode) converges to the p with F + c p = A,
// because the map's slope there is F / A < 1.

import { median } from '../../../shared/stats';

/**
 * Estimates are medians of the last few samples, not averages: a step that also paid for something
 * else (a KV cache reallocation, a snapshot copy, another process on the CPU) must not shrink the next
 * chunks on its own.
 */
const WINDOW = 7;
/** Chunk used before any prefill was measured. */
const PROBE_TOKENS = 32;

class RecentMedian {
  private readonly samples: number[] = [];

  add(sample: number): void {
    this.samples.push(sample);
    if (this.samples.length > WINDOW) this.samples.shift();
  }

  get value(): number | null {
    return this.samples.length === 0 ? null : median(this.samples);
  }
}

export class PrefillBudget {
  private readonly decodeSeconds = new RecentMedian();
  private readonly secondsPerToken = new RecentMedian();

  /** stallFactor 0 disables the adaptation (the static budget applies). */
  constructor(
    readonly stallFactor: number,
    readonly minTokens: number,
  ) {}

  /** Prefill tokens for a step that carries `decodeCount` decodes and has `available` budget left. */
  tokensFor(decodeCount: number, available: number): number {
    if (decodeCount === 0 || this.stallFactor <= 0) return available;
    const decodeSeconds = this.decodeSeconds.value;
    const secondsPerToken = this.secondsPerToken.value;
    if (decodeSeconds === null || secondsPerToken === null) return Math.min(available, PROBE_TOKENS);
    const tokens = Math.floor((this.stallFactor * decodeSeconds) / secondsPerToken);
    return Math.min(available, Math.max(this.minTokens, tokens));
  }

  /** Feeds the measured duration of a step that ran `decodeCount` decodes and `prefillTokens` prompt tokens. */
  observe(decodeCount: number, prefillTokens: number, seconds: number): void {
    if (prefillTokens === 0) {
      if (decodeCount > 0) this.decodeSeconds.add(seconds);
      return;
    }
    const decodePart = decodeCount > 0 ? (this.decodeSeconds.value ?? 0) : 0;
    this.secondsPerToken.add(Math.max(seconds - decodePart, 0) / prefillTokens);
  }

  /** Current estimates, for metrics and tests. */
  estimates(): { decodeSeconds: number | null; secondsPerToken: number | null } {
    return { decodeSeconds: this.decodeSeconds.value, secondsPerToken: this.secondsPerToken.value };
  }
}
