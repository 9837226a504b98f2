import { describe, expect, it } from 'vitest';
import { PrefillBudget } from './prefill-budget';

describe('PrefillBudget', () => {
  it('uses the whole budget when nothing decodes, and a probe chunk before any measurement', () => {
    const budget = new PrefillBudget(1.5, 8);
    expect(budget.tokensFor(0, 500)).toBe(500);
    expect(budget.tokensFor(4, 500)).toBe(32);
    expect(budget.tokensFor(4, 10)).toBe(10);
  });

  it('converges to the chunk whose prefill costs stallFactor x a decode step', () => {
    // Decode 100 ms; prefill run: 40 ms fixed + 5 ms per token. Allowed 150 ms -> (150 - 40) / 5 = 22 tokens.
    const budget = new PrefillBudget(1.5, 4);
    budget.observe(4, 0, 0.1);
    let chunk = budget.tokensFor(4, 1000);
    for (let step = 0; step < 60; step++) {
      budget.observe(4, chunk, 0.1 + 0.04 + 0.005 * chunk);
      budget.observe(4, 0, 0.1);
      chunk = budget.tokensFor(4, 1000);
    }
    expect(chunk).toBeGreaterThanOrEqual(21);
    expect(chunk).toBeLessThanOrEqual(22);
  });

  it('ignores a lone slow step (a cache reallocation) instead of shrinking the chunks', () => {
    const budget = new PrefillBudget(1.5, 4);
    budget.observe(4, 0, 0.1);
    for (let step = 0; step < 10; step++) budget.observe(4, 22, 0.1 + 0.04 + 0.005 * 22);
    const settled = budget.tokensFor(4, 1000);
    budget.observe(4, 22, 2.5);
    expect(budget.tokensFor(4, 1000)).toBe(settled);
  });

  it('never goes below minTokens (prefill always progresses) and can be switched off', () => {
    const slow = new PrefillBudget(1.5, 8);
    slow.observe(2, 0, 0.01);
    slow.observe(2, 32, 5);
    expect(slow.tokensFor(2, 1000)).toBe(8);
    const off = new PrefillBudget(0, 8);
    off.observe(2, 0, 0.01);
    off.observe(2, 32, 5);
    expect(off.tokensFor(2, 300)).toBe(300);
  });
});
