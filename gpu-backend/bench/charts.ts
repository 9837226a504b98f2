// Renders benchmark figures as SVG files, headless in Node: Vega-Lite specs compiled to Vega and drawn by
// a Vega View with no renderer (no browser, no native canvas; text widths are estimated).

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function writeChart(file: string, spec: TopLevelSpec): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, await renderSvg(spec));
  return file;
}

export interface RatioRow {
  metric: string;
  format: string;
  median: number;
  min: number;
  max: number;
}

/** Horizontal bars of ours / peer per metric, one panel row per format, a rule at 1 (parity) and whiskers min-max. */
export function ratioChart(title: string, subtitle: string | string[], rows: RatioRow[]): TopLevelSpec {
  // A metric a run did not measure (e.g. 8 sequences when --batches 4) has no ratio: no bar, and no NaN in the domain.
  rows = rows.filter((row) => [row.median, row.min, row.max].every(Number.isFinite));
  // A log scale cannot start bars at 0: they start at parity (1) and the domain is set from the data, so
  // a 0.5x and a 2x bar are as long as each other, one to each side of the dashed line.
  const low = Math.min(1, ...rows.map((row) => row.min)) / 1.25;
  const high = Math.max(1, ...rows.map((row) => row.max)) * 1.4;
  const x = { type: 'quantitative' as const, scale: { type: 'log' as const, domain: [low, high], zero: false, nice: false } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle },
    data: { values: rows },
    facet: { row: { field: 'format', type: 'nominal', title: null } },
    spec: {
      width: 420,
      height: { step: 18 },
      layer: [
        {
          mark: { type: 'bar', opacity: 0.85 },
          encoding: {
            y: { field: 'metric', type: 'nominal', sort: null, title: null, axis: { labelLimit: 320 } },
            x: { ...x, field: 'median', title: 'ours / llama.cpp (median; > 1 is better for us)', stack: null },
            x2: { datum: 1 },
            color: { condition: { test: 'datum.median >= 1', value: '#2e7d32' }, value: '#c62828' },
          },
        },
        {
          mark: { type: 'rule' },
          encoding: { y: { field: 'metric', type: 'nominal', sort: null }, x: { ...x, field: 'min' }, x2: { field: 'max' } },
        },
        {
          mark: { type: 'text', align: 'left', dx: 4 },
          encoding: {
            y: { field: 'metric', type: 'nominal', sort: null },
            x: { ...x, field: 'max' },
            text: { field: 'median', type: 'quantitative', format: '.2f' },
          },
        },
        { data: { values: [{ one: 1 }] }, mark: { type: 'rule', strokeDash: [4, 3], color: 'black' }, encoding: { x: { ...x, field: 'one' } } },
      ],
    },
  } as TopLevelSpec;
}

export interface SeriesPoint {
  x: number;
  y: number;
  series: string;
  panel: string;
}

/** Lines of y against x (e.g. throughput or latency against concurrency), one series per colour, one panel per measure. */
export function lineChart(title: string, subtitle: string | string[], xTitle: string, points: SeriesPoint[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle },
    data: { values: points },
    facet: { column: { field: 'panel', type: 'nominal', title: null } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 240,
      height: 180,
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'x', type: 'quantitative', title: xTitle, scale: { type: 'log', base: 2 } },
        y: { field: 'y', type: 'quantitative', title: null },
        color: { field: 'series', type: 'nominal', title: null },
      },
    },
  } as TopLevelSpec;
}
