// One choice's grammar: a matcher plus the [TOOL_CALLS] framing around it. Each step the sequence asks for
// the mask of allowed ids (null: unconstrained this step), samples among them, then `accept`s the id.
// 'required' tool calls allow only [TOOL_CALLS] first; 'auto' leaves the model free until it emits [TOOL_CALLS].
// EOS is in the mask exactly when the grammar can end; accepting it terminates the matcher.
// The matcher is either XGrammar's in this thread (tests, benchmarks) or one owned by the grammar thread
// (the server: the engine thread never runs XGrammar, see grammar-thread.ts).

import type { GrammarSource } from './grammar-source';
import type { CompiledGrammar, GrammarMatcher, XGrammar } from './xgrammar';

type Phase = 'force-trigger' | 'await-trigger' | 'constrained';

/** The masks of several matchers asked for in one message (the grammar thread fills them while the engine steps). */
export interface MaskBatch {
  flush(): void;
}

/** What GrammarState needs of a matcher, wherever it lives. */
export interface TokenMatcher {
  /** The ids allowed after every id accepted so far. */
  nextMask(): Promise<Int32Array>;
  /** Takes the id sampled under nextMask(); a refusal surfaces at once (here) or at the next nextMask (remote). */
  accept(tokenId: number): void;
  readonly terminated: boolean;
  /** Starts computing the next mask now; returns the batch to flush, or null when there is nothing to gain. */
  prefetch(): MaskBatch | null;
  dispose(): void;
}

/** XGrammar's matcher in this thread. */
class LocalMatcher implements TokenMatcher {
  constructor(private readonly matcher: GrammarMatcher) {}

  nextMask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }

  accept(tokenId: number): void {
    if (!this.matcher.acceptToken(tokenId)) throw new Error(`grammar matcher refused id ${tokenId} drawn under its own mask`);
  }

  get terminated(): boolean {
    return this.matcher.isTerminated();
  }

  prefetch(): null {
    return null;
  }

  dispose(): void {
    this.matcher.dispose();
  }
}

export class GrammarState {
  private phase: Phase;
  private readonly triggerMask: Int32Array | null;

  constructor(
    private readonly matcher: TokenMatcher,
    toolCalls: GrammarSource['toolCalls'],
    private readonly toolCallsTokenId: number | null,
    vocabSize: number,
  ) {
    this.phase = toolCalls === 'required' ? 'force-trigger' : toolCalls === 'auto' ? 'await-trigger' : 'constrained';
    if (toolCalls && toolCallsTokenId === null) throw new Error('tool-call grammar on a vocabulary without [TOOL_CALLS]');
    this.triggerMask = toolCalls === 'required' ? new Int32Array(Math.ceil(vocabSize / 32)) : null;
    if (this.triggerMask) this.triggerMask[toolCallsTokenId! >> 5] = 1 << (toolCallsTokenId! & 31);
  }

  /** A state over a matcher of XGrammar in this thread. */
  static async create(
    xgrammar: XGrammar,
    compiled: CompiledGrammar,
    source: GrammarSource,
    toolCallsTokenId: number | null,
    vocabSize: number,
  ): Promise<GrammarState> {
    const matcher = await xgrammar.GrammarMatcher.createGrammarMatcher(compiled);
    return new GrammarState(new LocalMatcher(matcher), source.toolCalls, toolCallsTokenId, vocabSize);
  }

  /** [ceil(vocabSize / 32)] bitmask of the ids allowed next (bit i of word i >> 5), or null for "any". */
  async mask(): Promise<Int32Array | null> {
    if (this.phase === 'await-trigger') return null;
    if (this.phase === 'force-trigger') return this.triggerMask;
    return this.matcher.nextMask();
  }

  /** Asks for the next mask ahead of mask() where the matcher is elsewhere (null: nothing to send). */
  prefetch(): MaskBatch | null {
    return this.phase === 'constrained' ? this.matcher.prefetch() : null;
  }

  /** Records the sampled id; it was drawn under mask(), so the matcher must take it. */
  accept(tokenId: number): void {
    if (this.phase !== 'constrained') {
      if (tokenId === this.toolCallsTokenId) this.phase = 'constrained';
      return;
    }
    this.matcher.accept(tokenId);
  }

  /** The grammar took EOS: the output is complete. */
  get terminated(): boolean {
    return this.phase === 'constrained' && this.matcher.terminated;
  }

  dispose(): void {
    this.matcher.dispose();
  }
}

/** Starts the next masks of these states in as few messages as there are grammar threads. */
export function prefetchMasks(states: Iterable<GrammarState>): void {
  const batches = new Set<MaskBatch>();
  for (const state of states) {
    const batch = state.prefetch();
    if (batch) batches.add(batch);
  }
  for (const batch of batches) batch.flush();
}

/** Sets every id the mask forbids to -Infinity in `into` (a copy of `logits`; rows may be shared by choices). */
export function applyMask(logits: Float32Array, mask: Int32Array, into: Float32Array): Float32Array {
  into.set(logits);
  for (let word = 0; word < mask.length; word++) {
    const bits = mask[word];
    if (bits === -1) continue;
    const base = word << 5;
    const end = Math.min(32, into.length - base);
    for (let bit = 0; bit < end; bit++) if (((bits >>> bit) & 1) === 0) into[base + bit] = -Infinity;
  }
  return into;
}

/** Whether the mask allows at least one of the first `vocabSize` ids. */
export function allowsAny(mask: Int32Array, vocabSize: number): boolean {
  const fullWords = vocabSize >> 5;
  for (let word = 0; word < fullWords; word++) if (mask[word] !== 0) return true;
  const rest = vocabSize & 31;
  return rest > 0 && (mask[fullWords] & ((1 << rest) - 1)) !== 0;
}
