// Drafts from the context (prompt lookup, vLLM's `ngram` method): the last n ids of a sequence (n from
// maxNgram down to 1) are matched against its own earlier ids, prompt and output, and the ids that
// followed the most recent match are proposed. How many follows each sequence's recent luck.

export interface NgramProposerOptions {
  /** Most draft ids per step (k_max). */
  maxTokens: number;
  /** Longest suffix matched first (default 3). */
  maxNgram?: number;
}

/** The longest pause after drafts of which none was kept: 32 steps. */
const MAX_PAUSE = 32;

export class NgramProposer {
  private readonly maxNgram: number;
  /** Draft length for the next step: what was kept after a rejection (at least 1), one more after a full acceptance. */
  private budget: number;
  /**
   * Proposals still skipped, and the length of the next pause: a draft of which nothing was kept pauses
   * drafting for 1, 2, 4, ... MAX_PAUSE steps (reset by any kept draft id). A verification row costs more
   * than a decode row where a step is dominated by its overhead (small models), and a sequence whose
   * text only matches its context by chance (single ids) would otherwise pay for it every step.
   */
  private paused = 0;
  private nextPause = 1;
  drafted = 0;
  accepted = 0;

  constructor(private readonly options: NgramProposerOptions) {
    this.maxNgram = options.maxNgram ?? 3;
    this.budget = options.maxTokens;
  }

  /**
   * Up to min(limit, the adaptive budget) ids that followed the latest earlier occurrence of the suffix
   * of prompt + output; [] when none matches. The two arrays are read in place: this runs every step.
   */
  propose(prompt: readonly number[], output: readonly number[], limit = Number.POSITIVE_INFINITY): number[] {
    const count = Math.min(limit, this.budget);
    if (count <= 0) return [];
    if (this.paused > 0) {
      this.paused--;
      return [];
    }
    const at = (i: number) => (i < prompt.length ? prompt[i] : output[i - prompt.length]);
    const end = prompt.length + output.length;
    for (let n = Math.min(this.maxNgram, end - 1); n >= 1; n--) {
      // Latest start whose n ids equal the suffix, not the suffix itself.
      for (let start = end - n - 1; start >= 0; start--) {
        let same = true;
        for (let i = 0; i < n && same; i++) same = at(start + i) === at(end - n + i);
        if (!same) continue;
        const draft: number[] = [];
        for (let i = start + n; i < Math.min(start + n + count, end); i++) draft.push(at(i));
        return draft;
      }
    }
    return [];
  }

  /** What the sampler kept of the last draft. */
  record(draftLength: number, acceptedCount: number): void {
    if (draftLength === 0) return;
    this.drafted += draftLength;
    this.accepted += acceptedCount;
    // A rejection shrinks the next draft to what was kept, at least 1, so wrong drafts stay cheap;
    // a fully accepted one earns one more, up to maxTokens.
    this.budget = acceptedCount === draftLength ? Math.min(this.options.maxTokens, this.budget + 1) : Math.max(1, acceptedCount);
    if (acceptedCount > 0) {
      this.nextPause = 1;
      return;
    }
    this.paused = this.nextPause;
    this.nextPause = Math.min(MAX_PAUSE, 2 * this.nextPause);
  }
}

/**
 * Draws rows 0..draft.length of a verification in order and keeps going while the id drawn equals the
 * next draft id; returns how many drafts were kept. `draw(row)` samples that row as plain decoding
 * would and says the id it emitted and whether the sequence ended there.
 */
export async function keptDrafts(draft: readonly number[], draw: (row: number) => Promise<{ tokenId: number | undefined; done: boolean }>): Promise<number> {
  let kept = 0;
  for (let i = 0; i <= draft.length; i++) {
    const { tokenId, done } = await draw(i);
    if (done || i === draft.length || tokenId !== draft[i]) break;
    kept++;
  }
  return kept;
}
