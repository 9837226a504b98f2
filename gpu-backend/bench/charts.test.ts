// The benchmark charts as drawn: every bar has a length that follows its ratio on the log scale, and no
// coordinate is NaN (a log scale with bars from 0 drew every bar empty and every whisker at NaN).

import { describe, expect, it } from 'vitest';
import { lineChart, ratioChart, renderSvg } from './charts';

/** Widths of the bar marks, in drawing order: each bar's path is `M x,y h W v H h -W Z`. */
function barWidths(svg: string): number[] {
  return [...svg.matchAll(/aria-roledescription="bar" d="M[-\d.e]+,[-\d.e]+h([-\d.e]+)v/g)].map((m) => Number(m[1]));
}

describe('ratioChart', () => {
  it('draws a bar per metric from parity, its length proportional to |log ratio|, whiskers finite', async () => {
    const rows = [
      { metric: 'prefill', format: 'int4', median: 2, min: 1.8, max: 2.2 },
      { metric: 'decode', format: 'int4', median: 0.5, min: 0.45, max: 0.55 },
      { metric: 'load', format: 'int4', median: 4, min: 3.9, max: 4.1 },
      { metric: 'not measured', format: 'int4', median: Number.NaN, min: Number.NaN, max: Number.NaN },
    ];
    const svg = await renderSvg(ratioChart('t', 's', rows));
    expect(svg).not.toContain('NaN');
    const widths = barWidths(svg).map(Math.abs);
    expect(widths).toHaveLength(3);
    const [twice, half, four] = widths;
    expect(twice).toBeGreaterThan(10);
    expect(half / twice).toBeCloseTo(1, 6); // 0.5x and 2x are one doubling each side of 1
    expect(four / twice).toBeCloseTo(2, 6);
  });
});

describe('lineChart', () => {
  it('draws finite lines', async () => {
    const points = [1, 4, 16].map((x) => ({ x, y: x * 10, series: 'ours', panel: 'tokens/s' }));
    const svg = await renderSvg(lineChart('t', 's', 'streams', points));
    expect(svg).not.toContain('NaN');
    expect(svg).toMatch(/role-mark[^>]*>.*<path[^>]* d="M[\d.]+,[\d.]+L/s);
  });
});
