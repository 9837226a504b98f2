// `npm run bench:peer -- --help`: our engine against llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU
// library) on the same checkpoint, side by side: each engine in its own process per round, rounds
// interleaved (A B B A ...), CPU use by other processes measured per round. Prints figures and ratios
// (min/median/max), a greedy-token fidelity check, writes JSON to bench-results/ and, with --charts DIR,
// an SVG chart. Asserts nothing.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configFromHuggingFace } from '../src/model/checkpoint/config';
import { BENCH_125M_CONFIG, DEFAULT_MODEL_CONFIG, ensureRandomModel } from '../src/model/checkpoint/default-model';
import { weightBytes as weightBytesHeld, weightBytesPerToken } from '../src/model/graph/weight-bytes';
import { ratioChart, writeChart } from './charts';
import { machineDescription } from './machine';
import { machineBusySeconds, othersShare, waitForQuietCpu } from './peer/cpu-share';
import { checkpointToGguf, type GgufFormat } from './peer/checkpoint-to-gguf';
import { measureReadBandwidth } from './read-bandwidth';

import { USAGE, values } from './peer/peer-args';
import { formatSpread, midpointMedian, spread } from '../../shared/stats';

const PEER_DIR = fileURLToPath(new URL('./peer/', import.meta.url));
const RUNNER = path.join(PEER_DIR, 'peer-runner.ts');
/** The runner resolves tsx and the ONNX cache (.models/onnx-cache) from here, wherever bench:peer was started. */
const REPO_ROOT = path.resolve(PEER_DIR, '../../..');
const GGUF_FORMAT: Record<string, GgufFormat> = { fp32: 'F32', int4: 'Q4_0' };
const TOKENIZER = path.resolve(PEER_DIR, '../../../../shared/fixtures/tokenizer/tokenizer.model.v1');
/** Mistral-7B-v0.1's shape without the window (the llama architecture in llama.cpp has none; 2000-token contexts never reach it). */
const MISTRAL_7B_CONFIG = {
  ...DEFAULT_MODEL_CONFIG,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  head_dim: 128,
  sliding_window: null,
  max_position_embeddings: 32768,
};

type Result = Record<string, number | string | number[]> & { greedyTokenIds: number[] };
type Round = { ours: Result; llama: Result };
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

function ensurePeerInstalled(): void {
  if (existsSync(path.join(PEER_DIR, 'node_modules/node-llama-cpp/package.json'))) return;
  console.log('installing node-llama-cpp 3.21.1 (prebuilt CPU binaries, no build, no downloads) into gpu-backend/bench/peer ...');
  execFileSync('npm', ['ci', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: PEER_DIR, stdio: 'inherit' });
}

async function ensureGguf(modelDir: string, format: GgufFormat): Promise<string> {
  const file = path.join(modelDir, `peer-${format}.gguf`);
  const weights = path.join(modelDir, existsSync(path.join(modelDir, 'model.safetensors')) ? 'model.safetensors' : 'config.json');
  if (existsSync(file) && statSync(file).mtimeMs > statSync(weights).mtimeMs) return file;
  console.log(`writing ${file} ...`);
  await checkpointToGguf(modelDir, `${file}.tmp`, format, TOKENIZER);
  renameSync(`${file}.tmp`, file);
  return file;
}

/** Runs one round of one engine in a fresh process; returns its result, wall time and the CPU others used meanwhile. */
function runRound(args: string[]): Promise<{ result: Result; othersShare: number }> {
  return new Promise((resolve, reject) => {
    const busyBefore = machineBusySeconds();
    const start = performance.now();
    const child = spawn(process.execPath, ['--import', 'tsx', RUNNER, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) return reject(new Error(`peer-runner ${args.join(' ')} exited ${code}:\n${stdout}`));
      const result = JSON.parse(line.slice(7)) as Result;
      const share = othersShare(busyBefore, machineBusySeconds(), (performance.now() - start) / 1000, Number(result.cpuSeconds));
      resolve({ result, othersShare: share });
    });
  });
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const span = (xs: number[]) => formatSpread(spread(xs, midpointMedian), fmt);
const agreeingPrefix = (a: number[], b: number[]) =>
  a.findIndex((x, i) => x !== b[i]) === -1 ? Math.min(a.length, b.length) : a.findIndex((x, i) => x !== b[i]);

async function main(): Promise<void> {
  if (values.help) return console.log(USAGE);
  if (values.render) return render(values.render.split(','));
  const shape = values.shape;
  if (shape !== '125m' && shape !== '7b') throw new Error(`--shape: expected 125m or 7b, got ${shape}`);
  const modelDir =
    shape === '125m'
      ? await ensureRandomModel(path.resolve(values['model-dir'] ?? '.models/bench-125m'), BENCH_125M_CONFIG, 125)
      : await ensureRandomModel(path.resolve(values['model-dir'] ?? path.join(os.homedir(), '.cache/mistral-edge-serve/bench-7b')), MISTRAL_7B_CONFIG, 7, {
          dtype: 'BF16',
        });
  const config = configFromHuggingFace(shape === '125m' ? BENCH_125M_CONFIG : MISTRAL_7B_CONFIG);
  ensurePeerInstalled();
  const formats = values.formats.split(',');
  for (const format of formats) if (!GGUF_FORMAT[format]) throw new Error(`--formats: ${format} is not one of fp32, int4`);
  const ggufs = new Map<string, string>();
  for (const format of formats) ggufs.set(format, await ensureGguf(modelDir, GGUF_FORMAT[format]));
  const common = [
    '--threads',
    values.threads,
    '--decode-tokens',
    values['decode-tokens'],
    '--long-context',
    values['long-context'],
    '--batches',
    values.batches,
  ];
  const argsFor = (engine: string, format: string) => [
    '--engine',
    engine,
    '--format',
    format,
    ...(engine === 'ours'
      ? [
          '--model-dir',
          modelDir,
          '--int4-block-size',
          values['int4-block-size'],
          '--kv-cache-dtype',
          values['kv-cache-dtype'],
          ...(values['chunk-size'] ? ['--chunk-size', values['chunk-size']] : []),
        ]
      : ['--gguf', ggufs.get(format)!]),
    ...common,
  ];
  const limit = Number(values['max-other-cpu']);
  const cpuModel = machineDescription();
  console.log(`${cpuModel}; shape ${shape}; threads ${values.threads}; ${new Date().toISOString()}`);
  const bandwidth = await measureReadBandwidth(Number(values.threads));
  const bestBandwidth = Math.max(bandwidth.jsSum, bandwidth.memcmp, bandwidth.parallelMemcmp);
  console.log(`read bandwidth (best of Float32Array sum, memcmp, memcmp on ${values.threads} threads): ${(bestBandwidth / 1e9).toFixed(1)} GB/s`);

  const settings = settingsFromFlags();
  const report: Record<string, unknown> = {
    machine: cpuModel,
    cpus: os.availableParallelism(),
    date: new Date().toISOString(),
    shape,
    threads: Number(values.threads),
    settings,
    bandwidthBytesPerSecond: bestBandwidth,
    formats: {},
  };
  let noisyRounds = 0;
  for (const format of formats) {
    // Build (or load) our cached ONNX graph once outside the rounds, so no round's load time includes a build.
    await runRound([...argsFor('ours', format), '--prepare']);
    const rounds: { ours: Result; llama: Result; othersShare: number }[] = [];
    for (let r = 0; r < Number(values.rounds); r++) {
      const quiet = await waitForQuietCpu(limit, Number(values['wait-quiet']));
      const order = r % 2 === 0 ? ['ours', 'llama'] : ['llama', 'ours'];
      const got: Record<string, Result> = {};
      let worst = quiet;
      for (const engine of order) {
        const { result, othersShare: share } = await runRound(argsFor(engine, format));
        got[engine] = result;
        worst = Math.max(worst, share);
      }
      if (worst > limit) noisyRounds++;
      console.log(`  ${format} round ${r + 1} (${order.join(' then ')}): others used ${(worst * 100).toFixed(0)}% of the CPU${worst > limit ? '  NOISY' : ''}`);
      rounds.push({ ours: got.ours, llama: got.llama, othersShare: worst });
    }
    printFormat(format, rounds, config, bestBandwidth, settings);
    (report.formats as Record<string, unknown>)[format] = { rounds };
  }
  const outDir = path.resolve(values.out);
  mkdirSync(outDir, { recursive: true });
  const jsonFile = path.join(outDir, `peer-${shape}-${Date.now()}.json`);
  writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nraw figures: ${jsonFile}`);
  if (values.charts) await writeCharts(report, path.resolve(values.charts));
  if (noisyRounds > 0) {
    console.log(`${noisyRounds} round(s) shared the CPU with other processes (over ${(limit * 100).toFixed(0)}%): figures are noisy`);
    if (values.strict) process.exit(1);
  }
}

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

function settingsFromFlags(): RunSettings {
  return {
    int4BlockSize: Number(values['int4-block-size']),
    kvCacheDtype: values['kv-cache-dtype'],
    longContext: Number(values['long-context']),
    decodeTokens: Number(values['decode-tokens']),
    batches: values.batches.split(',').map(Number),
  };
}

function printFormat(
  format: string,
  rounds: { ours: Result; llama: Result }[],
  config: ReturnType<typeof configFromHuggingFace>,
  bandwidth: number,
  settings: RunSettings,
): void {
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
async function render(files: string[]): Promise<void> {
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
  const config = configFromHuggingFace(merged.shape === '7b' ? MISTRAL_7B_CONFIG : BENCH_125M_CONFIG);
  // Runs saved before the settings were recorded (2026-11-29) print with the flags given here.
  const settings = (merged.settings as RunSettings | undefined) ?? settingsFromFlags();
  for (const [format, { rounds }] of Object.entries(merged.formats)) printFormat(format, rounds, config, Number(merged.bandwidthBytesPerSecond), settings);
  if (values.charts) await writeCharts(merged, path.resolve(values.charts));
}

async function writeCharts(report: Record<string, unknown>, dir: string): Promise<void> {
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

await main();
