// The prompt-lookup proposer: longest suffix first, the latest earlier match, the adaptive draft length.

import { describe, expect, it } from 'vitest';
import { NgramProposer } from './ngram-proposer';

describe('NgramProposer', () => {
  it('proposes what followed the latest earlier match of the longest matching suffix', () => {
    const proposer = new NgramProposer({ maxTokens: 4, maxNgram: 3 });
    // Suffix [7, 8, 9] occurred at 1..3, followed by 10, 11, 12, 13.
    expect(proposer.propose([5, 7, 8, 9, 10, 11], [12, 13, 14, 7, 8, 9])).toEqual([10, 11, 12, 13]);
    // Suffix 3-gram [1, 2, 3] absent, 2-gram [2, 3] latest at 4..5 (followed by 6), not the older 0..1.
    expect(proposer.propose([2, 3, 4, 9, 2], [3, 6, 1, 2, 3])).toEqual([6, 1, 2, 3]);
    // Only the 1-gram matches: the latest earlier 9 is followed by 4.
    expect(proposer.propose([9, 5, 9, 4], [1, 9])).toEqual([4, 1, 9]);
    expect(proposer.propose([9, 5, 9, 4, 1, 9], [], 2)).toEqual([4, 1]);
  });

  it('proposes nothing without a repeat, and nothing for a sequence of one id', () => {
    const proposer = new NgramProposer({ maxTokens: 4 });
    expect(proposer.propose([1, 2, 3], [4, 5])).toEqual([]);
    expect(proposer.propose([1], [])).toEqual([]);
    expect(proposer.propose([1], [1], 0)).toEqual([]);
  });

  it('shrinks the draft after rejections, grows it after full acceptances, counts both', () => {
    const proposer = new NgramProposer({ maxTokens: 4 });
    const ids = [1, 2, 3, 4, 5, 6, 1];
    expect(proposer.propose(ids, [])).toHaveLength(4);
    proposer.record(4, 1);
    expect(proposer.propose(ids, [])).toHaveLength(1);
    proposer.record(1, 0);
    expect(proposer.propose(ids, [])).toEqual([]); // nothing kept: drafting pauses for one step
    expect(proposer.propose(ids, [])).toHaveLength(1);
    proposer.record(1, 1);
    proposer.record(2, 2);
    expect(proposer.propose(ids, [])).toHaveLength(3);
    expect([proposer.drafted, proposer.accepted]).toEqual([8, 4]);
  });

  it('pauses drafting 1, 2, 4, ... 32 steps after drafts of which nothing was kept, until one is kept again', () => {
    const proposer = new NgramProposer({ maxTokens: 4 });
    const ids = [1, 2, 3, 4, 5, 6, 1];
    const skippedBefore = () => {
      let skipped = 0;
      while (proposer.propose(ids, []).length === 0) skipped++;
      return skipped;
    };
    const pauses: number[] = [];
    for (let miss = 0; miss < 8; miss++) {
      proposer.record(1, 0);
      pauses.push(skippedBefore());
    }
    expect(pauses).toEqual([1, 2, 4, 8, 16, 32, 32, 32]);
    proposer.record(1, 1);
    proposer.record(1, 0);
    expect(skippedBefore()).toBe(1);
  });
});
