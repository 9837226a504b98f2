// Continuous batching: `waiting` and `running` queues; one step = schedule -> engine.step -> sample ->
// postprocess -> emit. Requests join and leave only at step boundaries. Every running decode goes into
// each step; the rest of the token budget prefills prompts in chunks, so a long prompt never stalls
// the streams already running.

import type { GenerateEvent } from '../../../shared/protocol';
import type { KvCacheStats, ModelEngine, StepItem } from '../model/runtime/engine-types';
import { Capacity, type CapacityLimits } from './capacity';
import { type GrammarState, prefetchMasks } from './grammar/grammar-state';
import { OutputEmitter } from './output-emitter';
import { PrefillBudget } from './prefill-budget';
import type { PrefixCache } from './prefix-cache';
import { type RequestGroup, Sequence, type ScheduledRequest } from './sequence';

/** Capacity's limits (maxRunning, the prefix cache) and the step's token budget. */
export interface SchedulerLimits extends CapacityLimits {
  /** Tokens per engine step: one per running decode, the rest for prefill chunks. */
  maxBatchedTokens: number;
  /**
   * While streams decode, prefill per step is sized so it costs about this multiple of a plain decode
   * step (measured; see PrefillBudget); 0 uses maxBatchedTokens alone.
   */
  prefillStallFactor: number;
  /** Smallest prefill chunk while streams decode, so prompts progress however slow prefill is. */
  prefillMinTokens: number;
  /**
   * Speculative decoding by prompt lookup: most draft ids a decoding sequence verifies per step (at
   * most the engine's speculativeTokens); 0 or absent: off.
   */
  speculativeTokens?: number;
}

export interface SchedulerStats {
  running: number;
  waiting: number;
  steps: number;
  /** Items (sequences) in the last step and how many of them were single-token decodes. */
  lastBatchSize: number;
  lastDecodeCount: number;
  lastPrefillTokens: number;
  /** Wall time of the last engine step (debug logs: where inter-token latency goes). */
  lastStepSeconds: number;
  freeSequences: number;
  kv: KvCacheStats;
  prefixCacheEntries: number;
  prefixCacheHits: number;
  prefixCacheMisses: number;
  /** Draft ids verified and accepted since start (speculative decoding). */
  speculativeDrafted: number;
  speculativeAccepted: number;
}

export type SchedulerEventSink = (requestId: number, event: GenerateEvent) => void;

interface ScheduledItem extends StepItem {
  sequence: Sequence;
  /** Draft ids behind the last sampled id (a verification item); empty for plain decodes and prompt chunks. */
  draft: number[];
}

export class Scheduler {
  readonly waiting: RequestGroup[] = [];
  readonly running: Sequence[] = [];
  /** The one owner of engine rows and choice slots (see capacity.ts); the scheduler asks it. */
  readonly capacity: Capacity;
  readonly prefixCache: PrefixCache;
  private readonly groups = new Map<number, RequestGroup>();
  private lastStep = { batchSize: 0, decodeCount: 0, prefillTokens: 0, seconds: 0 };
  private steps = 0;
  private wake: (() => void) | null = null;
  private stopped = false;
  private readonly prefillBudget: PrefillBudget;
  private readonly speculativeTokens: number;
  /** Every event goes out through it: tokens, finishes (rows given back), ends, errors. */
  private readonly output: OutputEmitter;

  constructor(
    private readonly engine: ModelEngine,
    readonly limits: SchedulerLimits,
    emit: SchedulerEventSink,
    /** Seconds; injectable so tests can run the step-time feedback on virtual time. */
    private readonly clock: () => number = () => performance.now() / 1000,
  ) {
    this.prefillBudget = new PrefillBudget(limits.prefillStallFactor, limits.prefillMinTokens);
    if (limits.maxRunning > limits.maxBatchedTokens) {
      throw new Error(`maxBatchedTokens (${limits.maxBatchedTokens}) must be at least maxRunning (${limits.maxRunning})`);
    }
    this.speculativeTokens = limits.speculativeTokens ?? 0;
    if (this.speculativeTokens > engine.speculativeTokens) {
      throw new Error(`speculativeTokens (${this.speculativeTokens}) exceeds what the engine verifies (${engine.speculativeTokens})`);
    }
    this.capacity = new Capacity(engine, limits);
    this.prefixCache = this.capacity.prefixCache;
    this.output = new OutputEmitter(engine, this.capacity, emit, (group) => this.groups.delete(group.request.id));
  }

  /** `grammars`: one matcher per choice when the request has a grammar (made by the engine host). */
  submit(request: ScheduledRequest, grammars: GrammarState[] | null = null): void {
    const group: RequestGroup = { request, reservation: null, sequences: [], cachedTokens: 0, snapshotPoints: [], cancelled: false, grammars };
    group.sequences.push(this.newSequence(group, 0));
    this.groups.set(request.id, group);
    this.waiting.push(group);
    this.wake?.();
  }

  /** The request leaves at the next step boundary; its sequences are released there. */
  cancel(requestId: number): void {
    const group = this.groups.get(requestId);
    if (!group) return;
    group.cancelled = true;
    this.wake?.();
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** One scheduler step; false when there was nothing to run. */
  async step(): Promise<boolean> {
    this.dropCancelled();
    const items = this.schedule();
    if (items.length === 0) return false;
    prefetchMasks(this.grammarsSampledAfter(items));
    let logits: Float32Array[];
    const started = this.clock();
    try {
      logits = await this.engine.step(items.map(({ sequenceId, tokenIds, draft }) => ({ sequenceId, tokenIds, ...(draft.length > 0 && { verify: true }) })));
    } catch (error) {
      this.failBatch(items, error as Error);
      return true;
    }
    this.lastStep.seconds = this.clock() - started;
    this.prefillBudget.observe(this.lastStep.decodeCount, this.lastStep.prefillTokens, this.lastStep.seconds);
    this.steps++;
    await this.postprocess(items, logits);
    return true;
  }

  /** Runs steps until stop(); sleeps (no polling) while there is no work. */
  async run(afterStep?: (didWork: boolean) => void): Promise<void> {
    while (!this.stopped) {
      const didWork = await this.step();
      afterStep?.(didWork);
      // Yield a macrotask so messages (submit, cancel) are handled between steps.
      if (didWork || [...this.groups.values()].some((group) => group.cancelled)) await new Promise((resolve) => setImmediate(resolve));
      else await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }

  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  stats(): SchedulerStats {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      steps: this.steps,
      lastBatchSize: this.lastStep.batchSize,
      lastDecodeCount: this.lastStep.decodeCount,
      lastPrefillTokens: this.lastStep.prefillTokens,
      lastStepSeconds: this.lastStep.seconds,
      freeSequences: this.engine.freeSequences(),
      kv: this.engine.kvStats(),
      prefixCacheEntries: this.prefixCache.size,
      prefixCacheHits: this.prefixCache.hits,
      prefixCacheMisses: this.prefixCache.misses,
      speculativeDrafted: this.output.speculativeDrafted,
      speculativeAccepted: this.output.speculativeAccepted,
    };
  }

  private schedule(): ScheduledItem[] {
    const items: ScheduledItem[] = [];
    let budget = this.limits.maxBatchedTokens;
    for (const sequence of this.running) {
      if (sequence.status !== 'decoding') continue;
      const draft = this.draftFor(sequence);
      items.push({ sequence, sequenceId: sequence.engineId, tokenIds: [sequence.outputIds[sequence.outputIds.length - 1], ...draft], draft });
      budget -= 1 + draft.length;
    }
    budget = Math.min(budget, this.prefillBudget.tokensFor(items.length, budget));
    for (const sequence of this.running) {
      if (budget <= 0) break;
      if (sequence.status !== 'prefilling') continue;
      items.push(this.prefillChunk(sequence, budget));
      budget -= items[items.length - 1].tokenIds.length;
    }
    while (budget > 0 && this.waiting.length > 0 && this.admit(this.waiting[0])) {
      const sequence = this.waiting.shift()!.sequences[0];
      items.push(this.prefillChunk(sequence, budget));
      budget -= items[items.length - 1].tokenIds.length;
    }
    // Counted the way the engine runs them: single-token items (a prompt's last token included) share
    // the decode run, longer ones are prefill runs.
    const inDecodeRun = (item: ScheduledItem) => item.tokenIds.length === 1 || item.draft.length > 0;
    this.lastStep = {
      batchSize: items.length,
      decodeCount: items.filter(inDecodeRun).length,
      prefillTokens: items.reduce((sum, item) => sum + (inDecodeRun(item) ? 0 : item.tokenIds.length), 0),
      seconds: 0,
    };
    return items;
  }

  /** The matchers whose masks this step's sampling needs: decodes, and every choice of a prompt that completes. */
  private *grammarsSampledAfter(items: ScheduledItem[]): Generator<GrammarState> {
    for (const { sequence, tokenIds } of items) {
      if (sequence.status === 'decoding') {
        if (sequence.grammar) yield sequence.grammar;
      } else if (sequence.prefilled + tokenIds.length === sequence.promptLength) {
        yield* this.groups.get(sequence.request.id)?.grammars ?? [];
      }
    }
  }

  private newSequence(group: RequestGroup, choice: number): Sequence {
    const sequence = new Sequence(group.request, choice, this.engine.config.eosTokenId, group.grammars?.[choice] ?? null);
    if (this.speculativeTokens > 0) sequence.enableSpeculation(this.speculativeTokens);
    return sequence;
  }

  /** Drafts that fit: every emitted id stays within max_tokens and every verified position within maxModelLen. */
  private draftFor(sequence: Sequence): number[] {
    const length = this.engine.sequenceLength(sequence.engineId);
    const room = Math.min(sequence.request.sampling.maxTokens - sequence.outputIds.length, this.engine.maxModelLen - length) - 1;
    return sequence.proposeDraft(room);
  }

  /** Reserves the group's choices and gives the first one a row (from the prefix cache when one matches). */
  private admit(group: RequestGroup): boolean {
    const { request } = group;
    if (!this.capacity.canAdmit(request.sampling.n)) return false;
    group.reservation = this.capacity.reserve(request.sampling.n);
    const sequence = group.sequences[0];
    const hit = this.prefixCache.lookup(request.tokenIds, request.tokenIds.length - 1);
    sequence.engineId = this.capacity.takeRow(group.reservation, hit?.engineId ?? null, hit?.length);
    group.cachedTokens = hit?.length ?? 0;
    sequence.prefilled = group.cachedTokens;
    group.snapshotPoints = this.prefixCache.snapshotPoints(request.tokenIds, group.cachedTokens, request.prefixLength);
    sequence.status = 'prefilling';
    this.running.push(sequence);
    return true;
  }

  /** The next piece of the prompt, cut at the budget and at the next snapshot point. */
  private prefillChunk(sequence: Sequence, budget: number): ScheduledItem {
    const group = this.groups.get(sequence.request.id)!;
    let end = Math.min(sequence.promptLength, sequence.prefilled + budget);
    const point = group.snapshotPoints.find((length) => length > sequence.prefilled);
    if (point !== undefined && point < end) end = point;
    return { sequence, sequenceId: sequence.engineId, tokenIds: sequence.request.tokenIds.slice(sequence.prefilled, end), draft: [] };
  }

  /**
   * Samples and emits per item. What one request brings (its grammar, its sampling) can fail only that
   * request: it ends with an in-band error and the step goes on for the others.
   */
  private async postprocess(items: ScheduledItem[], logits: Float32Array[]): Promise<void> {
    const failed = new Map<RequestGroup, Error>();
    for (const [index, item] of items.entries()) {
      const group = this.groups.get(item.sequence.request.id)!;
      if (failed.has(group)) continue;
      try {
        await this.postprocessItem(group, item, logits[index]);
      } catch (error) {
        failed.set(group, error as Error);
      }
    }
    for (const [group, error] of failed) this.output.failRequest(group, error);
    if (failed.size > 0) this.dropCancelled();
    this.running.splice(0, this.running.length, ...this.running.filter((sequence) => sequence.status !== 'finished'));
  }

  private async postprocessItem(group: RequestGroup, { sequence, tokenIds, draft }: ScheduledItem, logits: Float32Array): Promise<void> {
    if (sequence.status === 'decoding' && draft.length > 0) return this.output.verifyAndEmit(group, sequence, draft, logits);
    if (sequence.status === 'decoding') return this.output.sampleAndEmit(group, sequence, logits);
    sequence.prefilled += tokenIds.length;
    if (group.snapshotPoints.includes(sequence.prefilled)) this.capacity.snapshot(sequence.request.tokenIds, sequence.prefilled, sequence.engineId);
    if (sequence.prefilled === sequence.promptLength) await this.finishPrefill(group, sequence, logits);
  }

  /** The prompt is in the cache: fork the other choices and sample every choice's first token. */
  private async finishPrefill(group: RequestGroup, first: Sequence, logits: Float32Array): Promise<void> {
    for (let choice = 1; choice < group.request.sampling.n; choice++) {
      const sibling = this.newSequence(group, choice);
      sibling.engineId = this.capacity.takeRow(group.reservation!, first.engineId);
      sibling.prefilled = first.prefilled;
      group.sequences.push(sibling);
      this.running.push(sibling);
    }
    for (const sequence of group.sequences) {
      sequence.status = 'decoding';
      await this.output.sampleAndEmit(group, sequence, logits);
    }
  }

  /** Cancelled requests leave here, at a step boundary: their choices finish with 'abort'. */
  private dropCancelled(): void {
    for (const group of [...this.groups.values()]) {
      if (!group.cancelled) continue;
      const waitingIndex = this.waiting.indexOf(group);
      if (waitingIndex >= 0) this.waiting.splice(waitingIndex, 1);
      while (group.sequences.length < group.request.sampling.n) group.sequences.push(this.newSequence(group, group.sequences.length));
      for (const sequence of group.sequences) {
        if (sequence.status === 'finished') continue;
        sequence.finishReason = 'abort';
        this.output.finishSequence(group, sequence);
      }
    }
    this.running.splice(0, this.running.length, ...this.running.filter((sequence) => sequence.status !== 'finished'));
  }

  /** An engine failure ends every request that had work in the failed step. */
  private failBatch(items: ScheduledItem[], error: Error): void {
    this.output.failStep(new Set(items.map((item) => this.groups.get(item.sequence.request.id)!)), error);
    this.dropCancelled();
  }
}
