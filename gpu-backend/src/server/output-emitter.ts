// A request group's output, the one place the scheduler's events are emitted: sampled ids (drafts
// verified first), each choice's finish with its row given back, the group's end, in-band errors.

import type { SampledLogprob } from '../../../shared/protocol';
import type { ModelEngine } from '../model/runtime/engine-types';
import type { Capacity } from './capacity';
import { keptDrafts } from './ngram-proposer';
import type { SchedulerEventSink } from './scheduler';
import type { RequestGroup, Sequence } from './sequence';

export class OutputEmitter {
  /** Draft ids verified and accepted since start (speculative decoding). */
  private readonly speculative = { drafted: 0, accepted: 0 };

  constructor(
    private readonly engine: ModelEngine,
    private readonly capacity: Capacity,
    private readonly emit: SchedulerEventSink,
    /** Called once per group, after its last choice's finish and before its end event. */
    private readonly groupEnded: (group: RequestGroup) => void,
  ) {}

  get speculativeDrafted(): number {
    return this.speculative.drafted;
  }

  get speculativeAccepted(): number {
    return this.speculative.accepted;
  }

  async sampleAndEmit(group: RequestGroup, sequence: Sequence, logits: Float32Array): Promise<void> {
    const sampled = await sequence.sampleNext(logits);
    if (sampled) {
      const logprobs = sampled.logprob ? [sampled.logprob] : undefined;
      this.emit(group.request.id, { event: 'token', data: { choice: sequence.choice, tokenIds: [sampled.tokenId], ...(logprobs && { logprobs }) } });
    }
    if (sequence.finishReason) this.finishSequence(group, sequence);
  }

  /**
   * Samples row after row of a verification exactly as plain decoding would (same sampler, same one
   * draw per id, penalties and grammar advanced over each id emitted) and goes on while the id drawn
   * equals the next draft. Drawing t ~ p and keeping the draft d when t = d is the rejection rule for
   * a one-point draft (keep d with probability p(d), else draw from p without d), so the output
   * distribution, and a seeded run's ids, are those of decoding without drafts. The rejected draft
   * positions are rolled back before anything is emitted.
   */
  async verifyAndEmit(group: RequestGroup, sequence: Sequence, draft: number[], rows: Float32Array): Promise<void> {
    const { vocabSize } = this.engine.config;
    const fedLength = this.engine.sequenceLength(sequence.engineId) - draft.length;
    const tokenIds: number[] = [];
    const logprobs: SampledLogprob[] = [];
    const accepted = await keptDrafts(draft, async (i) => {
      const sampled = await sequence.sampleNext(rows.subarray(i * vocabSize, (i + 1) * vocabSize));
      if (sampled) tokenIds.push(sampled.tokenId);
      if (sampled?.logprob) logprobs.push(sampled.logprob);
      return { tokenId: sequence.outputIds[sequence.outputIds.length - 1], done: sequence.finishReason !== null };
    });
    this.engine.truncateSequence(sequence.engineId, fedLength + accepted);
    sequence.recordDraft(draft.length, accepted);
    this.speculative.drafted += draft.length;
    this.speculative.accepted += accepted;
    if (tokenIds.length > 0) {
      this.emit(group.request.id, { event: 'token', data: { choice: sequence.choice, tokenIds, ...(logprobs.length > 0 && { logprobs }) } });
    }
    if (sequence.finishReason) this.finishSequence(group, sequence);
  }

  finishSequence(group: RequestGroup, sequence: Sequence): void {
    sequence.status = 'finished';
    sequence.release();
    // A choice of a request that never left `waiting` holds nothing; one never forked holds a promise.
    // A whole answer (not one cut short by an abort or a failure) stays cached for the next turn.
    const whole = sequence.finishReason === 'stop' || sequence.finishReason === 'length';
    if (group.reservation && whole) this.capacity.retire(group.reservation, sequence.engineId, [...sequence.request.tokenIds, ...sequence.outputIds]);
    else if (group.reservation) this.capacity.release(group.reservation, sequence.engineId);
    sequence.engineId = -1;
    this.emit(group.request.id, { event: 'finish', data: { choice: sequence.choice, finishReason: sequence.finishReason! } });
    if (group.sequences.length < group.request.sampling.n) return;
    if (group.sequences.some((other) => other.status !== 'finished')) return;
    this.groupEnded(group);
    const completionTokens = group.sequences.reduce((sum, other) => sum + other.outputIds.length, 0);
    this.emit(group.request.id, {
      event: 'end',
      data: { usage: { promptTokens: group.request.tokenIds.length, completionTokens, cachedTokens: group.cachedTokens } },
    });
  }

  /** Ends one request whose own processing failed; the operator gets the message, the wire a generic one. */
  failRequest(group: RequestGroup, error: Error): void {
    console.error(`request ${group.request.id} failed in the step loop (the others go on): ${error.message}`);
    this.endWithError(group, 'Generating this request failed; other requests are unaffected.');
  }

  /** An engine failure ends every request that had work in the failed step. */
  failStep(failed: Set<RequestGroup>, error: Error): void {
    // The operator gets the engine's message; the wire gets a generic one (never backend internals).
    console.error(`engine step failed (${failed.size} requests ended): ${error.message}`);
    for (const group of failed) this.endWithError(group, 'The model engine failed on this request.');
  }

  /** The in-band error the client sees (never backend internals); the group leaves at the next step boundary. */
  private endWithError(group: RequestGroup, message: string): void {
    this.emit(group.request.id, { event: 'error', data: { message, type: 'server_error', param: null, code: 'internal_error' } });
    group.cancelled = true;
  }
}
