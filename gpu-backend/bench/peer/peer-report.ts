// bench:peer's printed tables and charts, for a run just measured or for saved ones (--render): per metric the
// spread of both engines and of their per-round ratio, the weight-read floor, the peak-RSS target and greedy fidelity.

import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatSpread, midpointMedian, spread } from '../../../shared/stats';
import type { configFromHuggingFace } from '../../src/model/checkpoint/config';
import { weightBytes as weightBytesHeld, weightBytesPerToken } from '../../src/model/graph/weight-bytes';
import { ratioChart, writeChart } from '../charts';
import type { GgufFormat } from './checkpoint-to-gguf';
import { values } from './peer-args';

type ModelConfig = ReturnType<typeof configFromHuggingFace>;
/** Our format and the llama.cpp format it is measured against. */
export const GGUF_FORMAT: Record<string, GgufFormat> = { fp32: 'F32', int4: 'Q4_0' };
export type Result = Record<string, number | string | number[]> & { greedyTokenIds: number[] };
export type Round = { ours: Result; llama: Result };
/** Higher is better, except load time and memory (their ratio is taken the other way round). */
const METRICS = [
  ['prefill128', 'prefill 128 (tok/s)'],
  ['prefillLong', `prefill ${values['long-context']} (tok/s)`],
  ['decode128', 'decode @128 (tok/s)'],
  ['decodeLong', `decode @${values['long-context']} (tok/s)`],
  ...values.batches.split(',').map((b) => [`aggregate${b}`, `${b} sequences aggregate (tok/s)`]),
  ['loadSeconds', 'load (s, lower better)'],
  ['peakRssMiB', 'peak RSS (MiB, lower better)'],
] as const;
const LOWER_IS_BETTER = new Set(['loadSeconds', 'peakRssMiB']);

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const span = (xs: number[]) => formatSpread(spread(xs, midpointMedian), fmt);
const agreeingPrefix = (a: number[], b: number[]) =>
  a.findIndex((x, i) => x !== b[i]) === -1 ? Math.min(a.length, b.length) : a.findIndex((x, i) => x !== b[i]);

function ratioRows(format: string, rounds: { ours: Result; llama: Result }[]) {
  return METRICS.map(([key, label]) => {
    const ratios = rounds.map(({ ours, llama }) =>
      LOWER_IS_BETTER.has(key) ? Number(llama[key]) / Number(ours[key]) : Number(ours[key]) / Number(llama[key]),
    );
    return { metric: label, key, format, ...spread(ratios, midpointMedian) };
  });
}

/** What a run measured with, beyond the shape: saved with it, so --render prints a saved run's figures, not the flags given to --render. */
interface RunSettings {
  int4BlockSize: number;
  kvCacheDtype: string;
  longContext: number;
  decodeTokens: number;
  batches: number[];
}

export function settingsFromFlags(): RunSettings {
  return {
    int4BlockSize: Number(values['int4-block-size']),
    kvCacheDtype: values['kv-cache-dtype'],
    longContext: Number(values['long-context']),
    decodeTokens: Number(values['decode-tokens']),
    batches: values.batches.split(',').map(Number),
  };
}

export function printFormat(format: string, rounds: { ours: Result; llama: Result }[], config: ModelConfig, bandwidth: number, settings: RunSettings): void {
  const peer = GGUF_FORMAT[format];
  console.log(
    `\n${format} (ours) vs ${peer} (llama.cpp), ${rounds.length} rounds: median (min-max); ratio = ours/llama.cpp per round (load, RSS: llama.cpp/ours), > 1 is better for us`,
  );
  for (const row of ratioRows(format, rounds)) {
    const ours = rounds.map((r) => Number(r.ours[row.key]));
    const llama = rounds.map((r) => Number(r.llama[row.key]));
    console.log(`  ${row.metric.padEnd(34)} ours ${span(ours).padEnd(22)} llama.cpp ${span(llama).padEnd(22)} ratio ${formatSpread(row, fmt)}`);
  }
  // Ours from the one weight-size rule; llama.cpp's Q4_0 holds 18 bytes per block of 32 (16 packed + an fp16 scale).
  const linearWeights = weightBytesPerToken(config, 'fp32') / 4;
  const blockSize = settings.int4BlockSize;
  const bytesPerWeight = format === 'fp32' ? { ours: 4, llama: 4 } : { ours: weightBytesPerToken(config, 'int4', blockSize) / linearWeights, llama: 18 / 32 };

  const agree = rounds.map((r) => agreeingPrefix(r.ours.greedyTokenIds, r.llama.greedyTokenIds));
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
  const floor = (bytes: number) => `${fmt(bandwidth / bytes)} tok/s`;
  console.log(
    `  weights read per decode token: ours ${mb(linearWeights * bytesPerWeight.ours)}, llama.cpp ${mb(linearWeights * bytesPerWeight.llama)}; ` +
      `bandwidth floor (${(bandwidth / 1e9).toFixed(1)} GB/s, weights only): ours ${floor(linearWeights * bytesPerWeight.ours)}, llama.cpp ${floor(linearWeights * bytesPerWeight.llama)}`,
  );
  // Peak RSS target: 1.2 x (weights in the format + the KV cache the run used at most + 200 MB).
  const weightBytes = weightBytesHeld(config, format === 'fp32' ? 'fp32' : 'int4', blockSize);
  const liveTokens = Math.max(settings.longContext, 128 * Math.max(...settings.batches)) + settings.decodeTokens;
  const kvBytesPerToken = 2 * config.layerCount * config.keyValueHeadCount * config.headDim * (settings.kvCacheDtype === 'fp16' ? 2 : 4);
  const budgetMiB = (1.2 * (weightBytes + liveTokens * kvBytesPerToken + 200e6)) / 2 ** 20;
  const peakRss = midpointMedian(rounds.map((r) => Number(r.ours.peakRssMiB)));
  console.log(
    `  peak RSS target 1.2 x (weights ${mb(weightBytes)} + KV in use ${mb(liveTokens * kvBytesPerToken)} + 200 MB) = ${budgetMiB.toFixed(0)} MiB: ours ${peakRss.toFixed(0)} MiB, ${peakRss <= budgetMiB ? 'met' : 'MISSED'}`,
  );
  const tokens = rounds[0].ours.greedyTokenIds;
  const note = format === 'fp32' ? '' : ' (int4 and Q4_0 round differently: fp32 vs fp16 scales, int8 vs Q8 activations; agreement is not expected)';
  console.log(
    `  fidelity: greedy ids after the 128-token prompt agree for the first ${Math.min(...agree)} of ${tokens.length}${note} (ours: ${tokens.slice(0, 8).join(' ')} ...)`,
  );
}

/** Tables and charts from saved runs: formats merged (later files win), noisy rounds left out where quiet ones exist. */
export async function render(files: string[], configOf: (shape: unknown) => ModelConfig): Promise<void> {
  const limit = Number(values['max-other-cpu']);
  const reports = files.map(
    (file) => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown> & { formats: Record<string, { rounds: (Round & { othersShare: number })[] }> },
  );
  const merged: Record<string, unknown> & { formats: Record<string, { rounds: Round[] }> } = {
    ...reports[0],
    formats: {},
    sources: files.map((file) => path.basename(file)),
  };
  for (const report of reports) {
    for (const [format, { rounds }] of Object.entries(report.formats)) {
      const quiet = rounds.filter((round) => round.othersShare <= limit);
      merged.formats[format] = { rounds: quiet.length > 0 ? quiet : rounds };
      console.log(
        `${path.basename(files[reports.indexOf(report)])} ${format}: ${quiet.length > 0 ? quiet.length : rounds.length} of ${rounds.length} rounds (${quiet.length > 0 ? 'quiet ones' : 'all noisy'})`,
      );
    }
  }
  const config = configOf(merged.shape);
  // Runs saved before the settings were recorded (2026-11-29) print with the flags given here.
  const settings = (merged.settings as RunSettings | undefined) ?? settingsFromFlags();
  for (const [format, { rounds }] of Object.entries(merged.formats)) printFormat(format, rounds, config, Number(merged.bandwidthBytesPerSecond), settings);
  if (values.charts) await writeCharts(merged, path.resolve(values.charts));
}

export async function writeCharts(report: Record<string, unknown>, dir: string): Promise<void> {
  const formats = report.formats as Record<string, { rounds: { ours: Result; llama: Result }[] }>;
  const rows = Object.entries(formats).flatMap(([format, { rounds }]) => ratioRows(`${format} vs ${GGUF_FORMAT[format]}`, rounds));
  const limit = Number(values['max-other-cpu']);
  const roundsNote = Object.entries(formats)
    .map(
      ([format, { rounds }]) =>
        `${format} ${rounds.length} rounds${rounds.some((r) => Number((r as { othersShare?: number }).othersShare) > limit) ? ' on a shared CPU (noisy)' : ''}`,
    )
    .join(', ');
  const subtitle = [
    `${report.machine}, ${report.threads} threads, ${String(report.date).slice(0, 10)}`,
    `bars: median ratio of interleaved rounds (${roundsNote}); whiskers min-max`,
  ];
  const file = await writeChart(
    path.join(dir, `peer-${report.shape}.svg`),
    ratioChart(`Ours vs llama.cpp (node-llama-cpp 3.21.1), ${report.shape} shape`, subtitle, rows),
  );
  writeFileSync(path.join(dir, `peer-${report.shape}.json`), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`chart: ${file}`);
}
