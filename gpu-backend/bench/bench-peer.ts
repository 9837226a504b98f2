// `npm run bench:peer -- --help`: our engine against llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU
// library) on the same checkpoint, side by side, llama.cpp twice: driven by a C++ loop (llama-loop.cc,
// no JS per token) and through node-llama-cpp. Each engine in its own process per round, rounds
// interleaved (A B C, C B A, ...), CPU use by other processes measured per round. Prints figures and ratios
// (min/median/max), a greedy-token fidelity check, writes JSON to bench-results/ and, with --charts DIR,
// an SVG chart. Asserts nothing.

import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configFromHuggingFace } from '../src/model/checkpoint/config';
import { BENCH_125M_CONFIG, DEFAULT_MODEL_CONFIG, ensureRandomModel } from '../src/model/checkpoint/default-model';
import { machineDescription } from './machine';
import { machineBusySeconds, othersShare, waitForQuietCpu } from './peer/cpu-share';
import { ensureGguf, ensurePeerInstalled, GGUF_FORMAT, PEER_DIR } from './peer/peer-install';
import { ensureLlamaLoop, type LlamaLoop } from './peer/llama-loop-build';
import { measureReadBandwidth } from './read-bandwidth';
import type { KvCacheDtype } from '../src/model/runtime/engine-types';
import { chooseRuntime } from '../src/model/runtime/runtime-choice';
import { USAGE, values } from './peer/peer-args';
import { type Engine, printFormat, type Result, type Round, render, settingsFromFlags, writeCharts } from './peer/peer-report';

const RUNNER = path.join(PEER_DIR, 'peer-runner.ts');
/** The runner resolves tsx and the ONNX cache (.models/onnx-cache) from here, wherever bench:peer was started. */
const REPO_ROOT = path.resolve(PEER_DIR, '../../..');
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

/** The model config of a shape, live or as a saved run names it. */
const configOf = (shape: unknown) => configFromHuggingFace(shape === '7b' ? MISTRAL_7B_CONFIG : BENCH_125M_CONFIG);

/** A process to start: the program and its arguments. */
type Command = [command: string, args: string[]];

/** Runs one round of one engine in a fresh process; returns its result and the CPU others used meanwhile. */
function runRound([command, commandArgs]: Command): Promise<{ result: Result; othersShare: number }> {
  return new Promise((resolve, reject) => {
    const busyBefore = machineBusySeconds();
    const start = performance.now();
    const child = spawn(command, commandArgs, {
      cwd: REPO_ROOT,
      env: { ...process.env, UV_THREADPOOL_SIZE: '1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) return reject(new Error(`${path.basename(command)} ${commandArgs.join(' ')} exited ${code}:\n${stdout}`));
      const result = JSON.parse(line.slice(7)) as Result;
      const share = othersShare(busyBefore, machineBusySeconds(), (performance.now() - start) / 1000, Number(result.cpuSeconds));
      resolve({ result, othersShare: share });
    });
  });
}

type PeerRound = Round & { othersShare: number };

async function main(): Promise<void> {
  if (values.help) return console.log(USAGE);
  if (values.render) return render(values.render.split(','), configOf);
  const shape = values.shape;
  if (shape !== '125m' && shape !== '7b') throw new Error(`--shape: expected 125m or 7b, got ${shape}`);
  const modelDir = await ensureModel(shape);
  const config = configOf(shape);
  ensurePeerInstalled();
  const loop = ensureLlamaLoop(PEER_DIR);
  const formats = values.formats.split(',');
  const kvCacheDtype = values['kv-cache-dtype'] as KvCacheDtype; // checked by peer-args
  const runtime =
    values.runtime ??
    chooseRuntime(config, { executionProvider: 'cpu', dtype: 'fp32', kvCacheDtype, maxModelLen: config.maxPositions, speculative: false }).runtime;
  const commandFor = engineCommands(modelDir, await ensureGgufs(modelDir, formats), loop, runtime);
  const limit = Number(values['max-other-cpu']);
  const cpuModel = machineDescription();
  console.log(`${cpuModel}; shape ${shape}; threads ${values.threads}; ${new Date().toISOString()}`);
  const bandwidth = await measureBestBandwidth();
  const settings = { ...settingsFromFlags(), runtime };
  const formatReports: Record<string, unknown> = {};
  const report = {
    machine: cpuModel,
    cpus: os.availableParallelism(),
    date: new Date().toISOString(),
    shape,
    threads: Number(values.threads),
    settings,
    bandwidthBytesPerSecond: bandwidth,
    formats: formatReports,
  };
  let noisyRounds = 0;
  for (const format of formats) {
    const rounds = await runRounds(format, commandFor, limit);
    noisyRounds += rounds.filter((round) => round.othersShare > limit).length;
    printFormat(format, rounds, config, bandwidth, settings);
    formatReports[format] = { rounds };
  }
  writeReport(report, shape);
  if (values.charts) await writeCharts(report, path.resolve(values.charts));
  if (noisyRounds > 0) {
    console.log(`${noisyRounds} round(s) shared the CPU with other processes (over ${(limit * 100).toFixed(0)}%): figures are noisy`);
    if (values.strict) process.exit(1);
  }
}

/** The checkpoint of the shape, generated once into --model-dir (random weights: the bench measures speed). */
function ensureModel(shape: '125m' | '7b'): Promise<string> {
  if (shape === '125m') return ensureRandomModel(path.resolve(values['model-dir'] ?? '.models/bench-125m'), BENCH_125M_CONFIG, 125);
  const modelDir = path.resolve(values['model-dir'] ?? path.join(os.homedir(), '.cache/mistral-edge-serve/bench-7b'));
  return ensureRandomModel(modelDir, MISTRAL_7B_CONFIG, 7, { dtype: 'BF16' });
}

/** llama.cpp's GGUF of the checkpoint per format, by format. */
async function ensureGgufs(modelDir: string, formats: string[]): Promise<Map<string, string>> {
  for (const format of formats) if (!GGUF_FORMAT[format]) throw new Error(`--formats: ${format} is not one of fp32, int4`);
  const ggufs = new Map<string, string>();
  for (const format of formats) ggufs.set(format, await ensureGguf(modelDir, GGUF_FORMAT[format]));
  return ggufs;
}

/** peer-runner's arguments for one engine and format: the flags both engines share, then each engine's own. */
function engineCommands(modelDir: string, ggufs: Map<string, string>, loop: LlamaLoop, runtime: string): (engine: Engine, format: string) => Command {
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
  const ours = [
    '--model-dir',
    modelDir,
    '--int4-block-size',
    values['int4-block-size'],
    '--kv-cache-dtype',
    values['kv-cache-dtype'],
    '--runtime',
    runtime,
    ...(values['chunk-size'] ? ['--chunk-size', values['chunk-size']] : []),
  ];
  return (engine, format) => {
    if (engine === 'loop') return [loop.binary, ['--format', format, '--gguf', ggufs.get(format)!, '--backends', loop.backends, ...common]];
    const args = ['--engine', engine, '--format', format, ...(engine === 'ours' ? ours : ['--gguf', ggufs.get(format)!]), ...common];
    return [process.execPath, ['--import', 'tsx', RUNNER, ...args]];
  };
}

async function measureBestBandwidth(): Promise<number> {
  const bandwidth = await measureReadBandwidth(Number(values.threads));
  const best = Math.max(bandwidth.jsSum, bandwidth.memcmp, bandwidth.parallelMemcmp);
  console.log(`read bandwidth (best of Float32Array sum, memcmp, memcmp on ${values.threads} threads): ${(best / 1e9).toFixed(1)} GB/s`);
  return best;
}

/** --rounds interleaved rounds of one format (ours first in even rounds, last in odd ones), each waiting for a quiet CPU first. */
async function runRounds(format: string, commandFor: (engine: Engine, format: string) => Command, limit: number): Promise<PeerRound[]> {
  // Build (or load) our cached ONNX graph once outside the rounds, so no round's load time includes a build.
  const [node, args] = commandFor('ours', format);
  await runRound([node, [...args, '--prepare']]);
  const rounds: PeerRound[] = [];
  for (let r = 0; r < Number(values.rounds); r++) {
    const quiet = await waitForQuietCpu(limit, Number(values['wait-quiet']));
    const order: Engine[] = r % 2 === 0 ? ['ours', 'loop', 'llama'] : ['llama', 'loop', 'ours'];
    const got: Partial<Record<Engine, Result>> = {};
    let worst = quiet;
    for (const engine of order) {
      const { result, othersShare: share } = await runRound(commandFor(engine, format));
      got[engine] = result;
      worst = Math.max(worst, share);
    }
    console.log(`  ${format} round ${r + 1} (${order.join(' then ')}): others used ${(worst * 100).toFixed(0)}% of the CPU${worst > limit ? '  NOISY' : ''}`);
    rounds.push({ ours: got.ours!, loop: got.loop!, llama: got.llama!, othersShare: worst });
  }
  return rounds;
}

function writeReport(report: Record<string, unknown>, shape: string): void {
  const outDir = path.resolve(values.out);
  mkdirSync(outDir, { recursive: true });
  const jsonFile = path.join(outDir, `peer-${shape}-${Date.now()}.json`);
  writeFileSync(jsonFile, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nraw figures: ${jsonFile}`);
}

await main();
