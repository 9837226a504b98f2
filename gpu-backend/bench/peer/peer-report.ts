// bench:peer's printed tables and charts, for a run just measured or for saved ones (--render): per metric the
// spread of both engines and of their per-round ratio, the weight-read floor, the peak-RSS target and greedy fidelity.

import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatSpread, midpointMedian, spread } from '../../../shared/stats';
import type { configFromHuggingFace } from '../../src/model/checkpoint/config';
import { weightBytes as weightBytesHeld, weightBytesPerToken } from '../../src/model/graph/weight-bytes';
import { ratioChart, writeChart } from '../charts';
import { values } from './peer-args';
import { GGUF_FORMAT } from './peer-install';

type ModelConfig = ReturnType<typeof configFromHuggingFace>;
export type Result = Record<string, number | string | number[]> & { greedyTokenIds: number[] };
/** ours; llama.cpp driven by a C++ loop (llama-loop.cc); llama.cpp through node-llama-cpp. */
export type Engine = 'ours' | 'loop' | 'llama';
type Peer = Exclude<Engine, 'ours'>;
/** Runs saved before the C++ loop existed (2026-12-07) have no `loop`. */
export type Round = { ours: Result; llama: Result; loop?: Result };
const PEER_NAME: Record<Peer, string> = { loop: 'llama.cpp C++', llama: 'node-llama-cpp' };
/** The peers every round measured, the C++ loop (the reference) first. */
const peersOf = (rounds: Round[]): Peer[] => (['loop', 'llama'] as const).filter((peer) => rounds.every((round) => round[peer] !== undefined));
/** Higher is better, except load time and memory (their ratio is taken the other way round). */
/** The figures a run measured, by key and label: its long context and batches are the run's own. */
const metricsOf = (settings: RunSettings): [key: string, label: string][] => [
  ['prefill128', 'prefill 128 (tok/s)'],
  ['prefillLong', `prefill ${settings.longContext} (tok/s)`],
  ['decode128', 'decode @128 (tok/s)'],
  ['decodeLong', `decode @${settings.longContext} (tok/s)`],
  ...settings.batches.map((b): [string, string] => [`aggregate${b}`, `${b} sequences aggregate (tok/s)`]),
  ['loadSeconds', 'load (s, lower better)'],
  ['peakRssMiB', 'peak RSS (MiB, lower better)'],
];
const LOWER_IS_BETTER = new Set(['loadSeconds', 'peakRssMiB']);

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const span = (xs: number[]) => formatSpread(spread(xs, midpointMedian), fmt);
const agreeingPrefix = (a: number[], b: number[]) =>
  a.findIndex((x, i) => x !== b[i]) === -1 ? Math.min(a.length, b.length) : a.findIndex((x, i) => x !== b[i]);

function ratioRows(format: string, rounds: Round[], peer: Peer, settings: RunSettings) {
  return metricsOf(settings).map(([key, label]) => {
    const ratios = rounds.map((round) => {
      const [ours, theirs] = [Number(round.ours[key]), Number(round[peer]![key])];
      return LOWER_IS_BETTER.has(key) ? theirs / ours : ours / theirs;
    });
    return { metric: label, key, format, ...spread(ratios, midpointMedian) };
  });
}

/** What a run measured with, beyond the shape: saved with it, so --render prints a saved run's figures, not the flags given to --render. */
interface RunSettings {
  /** Our session; runs saved before 2026-12-07 ran the JS one. */
  runtime?: string;
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

/** Runs saved before the settings were recorded (2026-11-29) print with the flags given now. */
const settingsOf = (report: Record<string, unknown>) => (report.settings as RunSettings | undefined) ?? settingsFromFlags();

export function printFormat(format: string, rounds: Round[], config: ModelConfig, bandwidth: number, settings: RunSettings): void {
  const peers = peersOf(rounds);
  console.log(
    `\n${format} (ours, ${settings.runtime ?? 'js'} session) vs ${GGUF_FORMAT[format]} (llama.cpp: ${peers.map((peer) => PEER_NAME[peer]).join(', ')}), ${rounds.length} rounds: median (min-max); ` +
      'ratio = ours/theirs per round (load, RSS: theirs/ours), > 1 is better for us',
  );
  const rows = peers.map((peer) => ratioRows(format, rounds, peer, settings));
  metricsOf(settings).forEach(([key, label], m) => {
    const figures = (engine: Engine) => span(rounds.map((r) => Number(r[engine]![key])));
    const columns = [`ours ${figures('ours').padEnd(20)}`, ...peers.map((peer) => `${PEER_NAME[peer]} ${figures(peer).padEnd(20)}`)];
    const ratios = peers.map((peer, p) => `vs ${peer === 'loop' ? 'C++' : 'node'} ${formatSpread(rows[p][m], fmt).padEnd(18)}`);
    console.log(`  ${label.padEnd(34)} ${columns.join(' ')} ${ratios.join(' ')}`);
  });
  // Ours from the one weight-size rule; llama.cpp's Q4_0 holds 18 bytes per block of 32 (16 packed + an fp16 scale).
  const linearWeights = weightBytesPerToken(config, 'fp32') / 4;
  const blockSize = settings.int4BlockSize;
  const bytesPerWeight = format === 'fp32' ? { ours: 4, llama: 4 } : { ours: weightBytesPerToken(config, 'int4', blockSize) / linearWeights, llama: 18 / 32 };

  const reference = peers[0];
  const agree = rounds.map((r) => agreeingPrefix(r.ours.greedyTokenIds, r[reference]!.greedyTokenIds));
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
    `  fidelity: greedy ids after the 128-token prompt agree with ${PEER_NAME[reference]} for the first ${Math.min(...agree)} of ${tokens.length}${note} (ours: ${tokens.slice(0, 8).join(' ')} ...)`,
  );
  if (peers.length === 2) {
    // One library, two drivers: a C++ loop whose structs did not match the library's would show here first.
    const same = rounds.map((r) => agreeingPrefix(r.loop!.greedyTokenIds, r.llama.greedyTokenIds));
    console.log(`  llama.cpp's two drivers agree on the first ${Math.min(...same)} of ${rounds[0].loop!.greedyTokenIds.length} greedy ids`);
  }
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
  const settings = settingsOf(merged);
  for (const [format, { rounds }] of Object.entries(merged.formats)) printFormat(format, rounds, config, Number(merged.bandwidthBytesPerSecond), settings);
  if (values.charts) await writeCharts(merged, path.resolve(values.charts));
}

export async function writeCharts(report: Record<string, unknown>, dir: string): Promise<void> {
  const formats = report.formats as Record<string, { rounds: Round[] }>;
  const rows = Object.entries(formats).flatMap(([format, { rounds }]) =>
    peersOf(rounds).flatMap((peer) => ratioRows(`${format} vs ${GGUF_FORMAT[format]} (${PEER_NAME[peer]})`, rounds, peer, settingsOf(report))),
  );
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
    ratioChart(`Ours vs llama.cpp (node-llama-cpp 3.21.1's library), ${report.shape} shape`, subtitle, rows),
  );
  writeFileSync(path.join(dir, `peer-${report.shape}.json`), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`chart: ${file}`);
}
