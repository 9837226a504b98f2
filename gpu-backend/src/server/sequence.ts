// One choice of one request as the scheduler tracks it: its engine sequence, the ids fed so far,
// its sampler and history, and why it finished. A request with n choices owns n of these.

import type { FinishReason, SampledLogprob, SamplingParams } from '../../../shared/protocol';
import type { GenerationHistory } from './logits-processors';
import { Prng } from './prng';
import { Sampler } from './sampler';

/** A request as the scheduler receives it: validated, defaults applied, seed fixed. */
export interface ScheduledRequest {
  /** The scheduler's own handle (requestIds come from clients and may repeat). */
  id: number;
  tokenIds: number[];
  sampling: SamplingParams & { seed: number };
  /** Length of a shared head (e.g. the system prompt) worth keeping in the prefix cache. */
  prefixLength?: number;
}

export type SequenceStatus = 'waiting' | 'prefilling' | 'decoding' | 'finished';

export class Sequence implements GenerationHistory {
  /** Engine sequence holding this choice's KV state; -1 while it has none. */
  engineId = -1;
  status: SequenceStatus = 'waiting';
  /** Prompt positions whose KV state the engine holds. */
  prefilled = 0;
  /** Sampled ids (stop id included), in order; the last one is fed at the next step. */
  readonly outputIds: number[] = [];
  finishReason: FinishReason | null = null;
  readonly seenTokenIds: Set<number>;
  readonly outputCounts = new Map<number, number>();
  private readonly sampler: Sampler;

  constructor(readonly request: ScheduledRequest, readonly choice: number, private readonly eosTokenId: number) {
    this.seenTokenIds = new Set(request.tokenIds);
    this.sampler = new Sampler(request.sampling, new Prng(request.sampling.seed, choice));
  }

  get promptLength(): number {
    return this.request.tokenIds.length;
  }

  /**
   * Samples the next id from the logits of this choice's last position, records it and decides
   * whether the choice ends. Returns the id to stream, or null for a stop id (not part of the text).
   */
  sampleNext(logits: Float32Array): { tokenId: number; logprob?: SampledLogprob } | null {
    const { tokenId, logprob } = this.sampler.sample(logits, this);
    this.outputIds.push(tokenId);
    this.seenTokenIds.add(tokenId);
    this.outputCounts.set(tokenId, (this.outputCounts.get(tokenId) ?? 0) + 1);
    const { sampling } = this.request;
    const isStop = (tokenId === this.eosTokenId && !sampling.ignoreEos) || sampling.stopTokenIds.includes(tokenId);
    if (isStop) this.finishReason = 'stop';
    else if (this.outputIds.length >= sampling.maxTokens) this.finishReason = 'length';
    return isStop ? null : { tokenId, logprob };
  }
}
