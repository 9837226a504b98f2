// Summary statistics for the benchmarks and scripts: one definition of each figure they print, so a "p99" or a
// "median" means the same thing in every report. Pure TypeScript (edge/bench imports it too).

/**
 * Nearest-rank percentile: the sample at index floor(p/100 * n) of the sorted samples, clamped to the last one, so
 * p50 of an even count is the upper of the two middle samples and p99 of fewer than 100 samples is the maximum.
 * Sorts a copy; NaN for no samples.
 */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The middle sample (p50 above): for an even count the upper of the two middle ones, always a measured value. */
export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

/** The mean of the two middle samples for an even count (the textbook median); the middle one for an odd count. */
export function midpointMedian(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** Median (by `middle`, the upper-middle `median` unless told) with the extremes. */
export function spread(samples: readonly number[], middle: (samples: readonly number[]) => number = median): Spread {
  return { median: middle(samples), min: Math.min(...samples), max: Math.max(...samples) };
}

/** `median (min-max)`, each figure written by `format`. */
export function formatSpread(s: Spread, format: (x: number) => string): string {
  return `${format(s.median)} (${format(s.min)}-${format(s.max)})`;
}
