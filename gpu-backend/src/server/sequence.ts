// A request as the scheduler tracks it (RequestGroup), and each of its choices (Sequence): its engine
// sequence, the ids fed so far, its sampler and history, and why it finished.

import type { FinishReason, SampledLogprob, SamplingParams } from '../../../shared/protocol';
import type { Reservation } from './capacity';
import { allowsAny, applyMask, type GrammarState } from './grammar/grammar-state';
import type { GrammarSource } from './grammar/grammar-source';
import type { GenerationHistory } from './logits-processors';
import { NgramProposer } from './ngram-proposer';
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
  /** Constraint on the output, checked by the HTTP thread first; the grammar thread compiles it and holds the matchers. */
  grammar?: GrammarSource;
}

/** A request and its choices; only choice 0 exists until the prompt is prefilled, then it forks. */
export interface RequestGroup {
  request: ScheduledRequest;
  /** What capacity gave the request at admission; null while it waits. */
  reservation: Reservation | null;
  sequences: Sequence[];
  cachedTokens: number;
  snapshotPoints: number[];
  cancelled: boolean;
  /** One matcher per choice (grammar requests), handed to each choice's sequence when it is made. */
  grammars: GrammarState[] | null;
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
  private masked: Float32Array | null = null;
  /** Prompt-lookup drafts (speculative decoding); null when off. */
  private proposer: NgramProposer | null = null;

  constructor(
    readonly request: ScheduledRequest,
    readonly choice: number,
    private readonly eosTokenId: number,
    /** This choice's own matcher (never shared with a sibling); null when unconstrained. */
    readonly grammar: GrammarState | null = null,
  ) {
    this.seenTokenIds = new Set(request.tokenIds);
    this.sampler = new Sampler(request.sampling, new Prng(request.sampling.seed, choice));
  }

  enableSpeculation(maxTokens: number): void {
    this.proposer = new NgramProposer({ maxTokens });
  }

  /** Up to `limit` draft ids to verify behind the last sampled one (none when off or nothing repeats). */
  proposeDraft(limit: number): number[] {
    if (!this.proposer || limit <= 0) return [];
    return this.proposer.propose(this.request.tokenIds, this.outputIds, limit);
  }

  recordDraft(draftLength: number, acceptedCount: number): void {
    this.proposer?.record(draftLength, acceptedCount);
  }

  get promptLength(): number {
    return this.request.tokenIds.length;
  }

  /**
   * Samples the next id from the logits of this choice's last position, records it and decides
   * whether the choice ends. Returns the id to stream, or null for a stop id (not part of the text).
   * With a grammar, ids it forbids are -Infinity before penalties, temperature and truncation, so those
   * (and logprobs) act on the allowed ids only; EOS is allowed exactly when the grammar can end.
   */
  async sampleNext(logits: Float32Array): Promise<{ tokenId: number; logprob?: SampledLogprob } | null> {
    const mask = this.grammar ? await this.grammar.mask() : null;
    // A matcher that allows nothing (and not EOS) cannot go on: sampling would draw a forbidden id.
    if (mask && !allowsAny(mask, logits.length)) throw new Error('the grammar allows no next token');
    const row = mask ? applyMask(logits, mask, (this.masked ??= new Float32Array(logits.length))) : logits;
    const { tokenId, logprob } = this.sampler.sample(row, this);
    this.grammar?.accept(tokenId);
    this.outputIds.push(tokenId);
    this.seenTokenIds.add(tokenId);
    this.outputCounts.set(tokenId, (this.outputCounts.get(tokenId) ?? 0) + 1);
    const { sampling } = this.request;
    const isStop = (tokenId === this.eosTokenId && !sampling.ignoreEos) || sampling.stopTokenIds.includes(tokenId) || (this.grammar?.terminated ?? false);
    if (isStop) this.finishReason = 'stop';
    else if (this.outputIds.length >= sampling.maxTokens) this.finishReason = 'length';
    return isStop ? null : { tokenId, logprob };
  }

  /** Frees what the choice holds outside the engine (its matcher); called once when it finishes. */
  release(): void {
    try {
      this.grammar?.dispose();
    } catch (error) {
      // A matcher that failed mid-request may fail to free as well; the request is over either way.
      console.error(`freeing the grammar matcher of request ${this.request.id} failed: ${(error as Error).message}`);
    }
  }
}
