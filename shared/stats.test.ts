import { describe, expect, it } from 'vitest';
import { formatSpread, median, midpointMedian, percentile, spread } from './stats';

describe('percentile (nearest rank)', () => {
  // 1..10 in a shuffled order: index floor(p/100 * 10) of the sorted samples.
  const samples = [7, 3, 10, 1, 9, 2, 8, 4, 6, 5];

  it('reads the sample at floor(p% of n), not one before or after', () => {
    expect(percentile(samples, 0)).toBe(1);
    expect(percentile(samples, 50)).toBe(6);
    expect(percentile(samples, 90)).toBe(10);
    expect(percentile(samples, 89)).toBe(9);
    expect(percentile(samples, 95)).toBe(10);
  });

  it('clamps p100 and p99 of few samples to the maximum', () => {
    expect(percentile(samples, 100)).toBe(10);
    expect(percentile([5, 1, 3], 99)).toBe(5);
  });

  it('leaves its input unsorted and gives NaN for no samples', () => {
    const input = [3, 1, 2];
    percentile(input, 50);
    expect(input).toEqual([3, 1, 2]);
    expect(percentile([], 50)).toBeNaN();
  });

  it('sorts numerically, not as strings', () => {
    expect(percentile([10, 9, 100], 0)).toBe(9);
    expect(median([10, 9, 100])).toBe(10);
  });
});

describe('median', () => {
  it('is the middle sample of an odd count', () => {
    expect(median([5, 1, 4, 2, 3])).toBe(3);
    expect(midpointMedian([5, 1, 4, 2, 3])).toBe(3);
  });

  it('takes the upper middle sample of an even count; midpointMedian their mean', () => {
    expect(median([4, 1, 3, 2])).toBe(3);
    expect(midpointMedian([4, 1, 3, 2])).toBe(2.5);
    expect(midpointMedian([])).toBeNaN();
  });
});

describe('spread', () => {
  it('pairs the median with the extremes and writes them as median (min-max)', () => {
    const s = spread([2, 8, 4, 6]);
    expect(s).toEqual({ median: 6, min: 2, max: 8 });
    expect(spread([2, 8, 4, 6], midpointMedian).median).toBe(5);
    expect(formatSpread(s, (x) => x.toFixed(1))).toBe('6.0 (2.0-8.0)');
  });
});
