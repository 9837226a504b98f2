// The device check (issue 6), run by check.sh on a GPU machine or here with --ep cpu: a) logits of the
// provider vs the CPU on one generated model, fp32 and fp16; b) prefill/decode speed of generated
// Mistral-shaped models; c) the bandwidth floor. Prints one table at the end and writes check.json.
//
//   check.ts [--ep webgpu|cpu|cuda] [--runtime js|native] [--cuda-graphs on|off|both] [--native-addon FILE] [--quick] [--local] [--out DIR] [--budget-s 330] [--layers-7b 4] [--threads N] [--no-profile]
// A full run ends with a per-operator profile of 7B-shape decode (webgpu) when 45 s of budget remain.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionProvider, SessionRuntime, WeightFormat } from '../src/model/runtime/engine-types';
import { weightBytesPerToken } from '../src/model/graph/weight-bytes';
import { benchConfig } from './bench-weights';
import { measureCopyBandwidth } from './check-bandwidth';
import { type CorrectnessResult, checkCorrectness } from './check-correctness';
import { type OpTime, profileDecode } from './check-profile';
import { useNativeAddonAt } from '../src/model/runtime/native-session';
import { type DeviceTarget, type SpeedPlan, type SpeedRow, measureSpeed } from './check-speed';

interface CheckArgs {
  ep: ExecutionProvider;
  runtime: SessionRuntime;
  /** cuda + native: 'both' (default) measures with CUDA graphs and adds decode rows without them. */
  cudaGraphs: 'on' | 'off' | 'both';
  quick: boolean;
  local: boolean;
  outDir: string | null;
  budgetSeconds: number;
  layers7b: number;
  threads: number;
  profile: boolean;
  /** The native session addon's file when it is not where npm ci builds it (check.sh's unpacked pack). */
  nativeAddon: string | null;
}

const USAGE = `Usage: check.ts [--ep webgpu|cpu|cuda] [--runtime js|native] [--cuda-graphs on|off|both] [--native-addon FILE]
                [--quick] [--local] [--out DIR] [--budget-s 330] [--layers-7b 4] [--threads N] [--no-profile]
The device check (on a GPU machine through check.sh, which unpacks the pack and passes --native-addon):
logits of the provider against the CPU engine, the copy-bandwidth floor, prefill and decode speed of
generated Mistral-shaped models. Prints a table; writes check.json and check-table.txt to --out (or $OUT).
--cuda-graphs (cuda, native): both (default) measures with CUDA graphs and adds decode rows without.
Exit 1 when a part failed or a correctness target was missed. --quick and --local use tiny models only.`;

function parseArgs(argv: string[]): CheckArgs {
  const args: CheckArgs = {
    ep: 'webgpu',
    runtime: 'js',
    cudaGraphs: 'both',
    quick: false,
    local: false,
    outDir: process.env.OUT ?? null,
    budgetSeconds: 330,
    layers7b: 4,
    threads: Math.max(1, Math.min(8, os.cpus().length)),
    profile: true,
    nativeAddon: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--ep') {
      const ep = value();
      if (ep !== 'webgpu' && ep !== 'cpu' && ep !== 'cuda') throw new Error(`--ep must be webgpu, cpu or cuda, got ${ep}`);
      args.ep = ep;
    } else if (flag === '--runtime') {
      const runtime = value();
      if (runtime !== 'js' && runtime !== 'native') throw new Error(`--runtime must be js or native, got ${runtime}`);
      args.runtime = runtime;
    } else if (flag === '--cuda-graphs') {
      const graphs = value();
      if (graphs !== 'on' && graphs !== 'off' && graphs !== 'both') throw new Error(`--cuda-graphs must be on, off or both, got ${graphs}`);
      args.cudaGraphs = graphs;
    } else if (flag === '--quick') args.quick = true;
    else if (flag === '--local') args.local = true;
    else if (flag === '--out') args.outDir = value();
    else if (flag === '--budget-s') args.budgetSeconds = Number(value());
    else if (flag === '--layers-7b') args.layers7b = Number(value());
    else if (flag === '--threads') args.threads = Number(value());
    else if (flag === '--no-profile') args.profile = false;
    else if (flag === '--native-addon') args.nativeAddon = value();
    else throw new Error(`unknown flag ${flag}`);
  }
  return args;
}

interface PlanRun {
  label: string;
  plan: SpeedPlan;
  /** Overrides the run's target (the rows without CUDA graphs). */
  cudaGraphs?: boolean;
  /** Overrides the run's session (the JS session's row beside the native one). */
  runtime?: SessionRuntime;
}

/** Whether the check's target can capture CUDA graphs at all (the native session on cuda). */
const capturesGraphs = (args: CheckArgs) => args.ep === 'cuda' && args.runtime === 'native';

/** What to measure: the device run; --quick and --local shrink it to prove the machinery only. */
function speedPlans(args: CheckArgs): PlanRun[] {
  if (args.quick || args.local) {
    const small = { prefillTokens: 128, contexts: [32, 256], batches: [1, 4], decodeSteps: 4 };
    return [
      { label: 'tiny-2L fp32', plan: { shape: 'tiny', layerCount: 2, dtype: 'fp32', ...small } },
      { label: 'tiny-2L int4', plan: { shape: 'tiny', layerCount: 2, dtype: 'int4', ...small } },
    ];
  }
  const full = { prefillTokens: 512, contexts: [128, 4096], batches: [1, 8, 32], decodeSteps: 8 };
  const plans: PlanRun[] = [
    { label: '125M fp16', plan: { shape: '125m', layerCount: 12, dtype: 'fp16', ...full } },
    { label: `7B-shape ${args.layers7b}L fp16`, plan: { shape: '7b', layerCount: args.layers7b, dtype: 'fp16', ...full } },
    { label: `7B-shape ${args.layers7b}L int4`, plan: { shape: '7b', layerCount: args.layers7b, dtype: 'int4', ...full } },
  ];
  if (!capturesGraphs(args)) return plans;
  // Beside the native figures, short decode rows of the 7B-shape models: without CUDA graphs (what the
  // launches cost), and the fp16 one through onnxruntime-node's session, whose KV cache crosses host <->
  // device every step (what the native session removes), at a short and a long context.
  const short = { prefillTokens: 128, decodeSteps: 8 };
  const fp16 = plans[1];
  const withoutGraphs = plans
    .slice(1)
    .map(({ label, plan }) => ({ label: `${label} -graphs`, plan: { ...plan, ...short, contexts: [128], batches: [1, 32] }, cudaGraphs: false }));
  return [
    ...plans,
    ...(args.cudaGraphs === 'both' ? withoutGraphs : []),
    { label: `${fp16.label} js`, plan: { ...fp16.plan, ...short, contexts: [128, 4096], batches: [1] }, runtime: 'js' },
  ];
}

/**
 * Correctness formats: GroupQueryAttention has no fp32 CUDA kernel, and the native session binds the cache on
 * the device, so under it a fp32 graph on CUDA would not keep its past in place; int4 computes in fp16 there.
 */
function correctnessFormats(target: DeviceTarget): WeightFormat[] {
  return target.runtime === 'native' && target.executionProvider === 'cuda' ? ['fp16', 'int4'] : ['fp32', 'fp16'];
}

function format(value: number | null, digits = 1): string {
  return value === null ? '-' : value.toFixed(digits);
}

interface SpeedResult {
  label: string;
  plan: SpeedPlan;
  rows: SpeedRow[];
  scale: number;
  floorTokensPerSecond: number;
}

/** One check run: its flags and clock, and every figure measured so far (what check.json holds). */
interface CheckRun {
  args: CheckArgs;
  target: DeviceTarget;
  started: number;
  budget: { remaining: () => number };
  log: (line: string) => void;
  errors: string[];
  correctness: CorrectnessResult[];
  bandwidth: { bytesPerSecond: number; bufferBytes: number; runs: number; links: number };
  speed: SpeedResult[];
  profile: OpTime[];
  /** Graphs built by the speed parts, kept for the run: a later plan of the same model and format loads them. */
  graphCacheDir: string;
}

function startRun(args: CheckArgs): CheckRun {
  const started = performance.now();
  return {
    args,
    target: { executionProvider: args.ep, runtime: args.runtime, cudaGraphs: capturesGraphs(args) ? args.cudaGraphs !== 'off' : undefined },
    started,
    budget: { remaining: () => args.budgetSeconds - (performance.now() - started) / 1000 },
    log: (line: string) => process.stdout.write(`${line}\n`),
    errors: [],
    correctness: [],
    bandwidth: { bytesPerSecond: Number.NaN, bufferBytes: 0, runs: 0, links: 0 },
    speed: [],
    profile: [],
    graphCacheDir: fs.mkdtempSync(path.join(os.tmpdir(), 'device-check-onnx-')),
  };
}

/** Each part records its failure and the check goes on, so one device run reports as much as it can. */
async function attempt<T>(run: CheckRun, part: string, work: () => Promise<T>): Promise<T | null> {
  try {
    return await work();
  } catch (error) {
    const message = `${part} failed: ${(error as Error).message}`;
    run.errors.push(message);
    run.log(message);
    return null;
  }
}

/** check.json is rewritten after every part: a run cut off by its time limit still leaves its figures. */
function save(run: CheckRun, complete: boolean): void {
  const { args } = run;
  if (!args.outDir) return;
  fs.mkdirSync(args.outDir, { recursive: true });
  const report = {
    date: new Date().toISOString(),
    complete,
    ep: args.ep,
    runtime: args.runtime,
    cudaGraphs: run.target.cudaGraphs ?? false,
    quick: args.quick,
    local: args.local,
    host: os.hostname(),
    cpus: os.cpus().length,
    errors: run.errors,
    correctness: run.correctness,
    bandwidth: run.bandwidth,
    speed: run.speed,
    profile: run.profile.slice(0, 40),
    seconds: (performance.now() - run.started) / 1000,
  };
  fs.writeFileSync(path.join(args.outDir, 'check.json'), `${JSON.stringify(report, null, 2)}\n`);
}

async function checkCorrectnessParts(run: CheckRun): Promise<void> {
  for (const dtype of correctnessFormats(run.target)) {
    const result = await attempt(run, `correctness ${dtype}`, () => checkCorrectness(run.target, dtype));
    if (!result) continue;
    run.correctness.push(result);
    run.log(
      `correctness ${dtype}: max relative error ${result.maxRelativeError.toExponential(2)} over ${result.rows} rows (target < ${result.target}) ${result.pass ? 'PASS' : 'FAIL'}`,
    );
  }
}

async function measureBandwidthPart(run: CheckRun): Promise<void> {
  const { args } = run;
  const measured = await attempt(run, 'copy bandwidth', () => measureCopyBandwidth(run.target, args.quick || args.local ? 64 << 20 : 512 << 20, args.threads));
  if (measured) run.bandwidth = measured;
  save(run, false);
  const { bandwidth } = run;
  run.log(
    `copy bandwidth: ${(bandwidth.bytesPerSecond / 1e9).toFixed(1)} GB/s (read + write, ${bandwidth.bufferBytes >> 20} MiB buffer, ${bandwidth.links} Neg per run)`,
  );
}

/** Each plan in turn, skipping one whose load alone (estimated from the last one's) would not fit the budget left. */
async function measureSpeedParts(run: CheckRun): Promise<void> {
  let loadSecondsPerParameter: number | null = null; // graph build + session start, from the last model
  for (const { label, plan, cudaGraphs, runtime } of speedPlans(run.args)) {
    const measured = benchConfig(plan.shape, plan.layerCount, 4096);
    const parameters = weightBytesPerToken(measured, 'fp32') / 4; // projection parameters: fp32 holds 4 bytes each
    const estimatedLoad = loadSecondsPerParameter === null ? 10 : parameters * loadSecondsPerParameter;
    if (run.budget.remaining() < estimatedLoad + 30) {
      run.log(`${label}: skipped (loading alone needs ~${estimatedLoad.toFixed(0)} s, ${run.budget.remaining().toFixed(0)} s left)`);
      continue;
    }
    run.log(`${label}:`);
    const full = benchConfig(plan.shape, plan.shape === '7b' ? 32 : plan.layerCount, 4096);
    // Decode is weight-bandwidth bound: time scales with the bytes read, so scale by the weight bytes.
    const scale = weightBytesPerToken(measured, plan.dtype) / weightBytesPerToken(full, plan.dtype);
    const floorTokensPerSecond = run.bandwidth.bytesPerSecond / weightBytesPerToken(full, plan.dtype);
    try {
      const target: DeviceTarget =
        runtime === 'js' ? { executionProvider: run.target.executionProvider, runtime } : { ...run.target, cudaGraphs: cudaGraphs ?? run.target.cudaGraphs };
      const rows = await measureSpeed(plan, target, run.args.threads, run.budget, run.log, undefined, run.graphCacheDir);
      run.speed.push({ label, plan, rows, scale, floorTokensPerSecond });
      loadSecondsPerParameter = rows[0].value! / parameters;
      save(run, false);
    } catch (error) {
      run.log(`  failed: ${(error as Error).message}`);
      const failed: SpeedRow = { phase: 'load', context: 0, batch: 0, value: null, note: `failed: ${(error as Error).message}` };
      run.speed.push({ label, plan, rows: [failed], scale, floorTokensPerSecond });
    }
  }
}

async function profilePart(run: CheckRun): Promise<void> {
  const { args } = run;
  // ONNX Runtime's profiler is switched on through the JS session's options only.
  if (!(args.profile && args.runtime === 'js' && !args.quick && !args.local && args.outDir && run.budget.remaining() > 45)) return;
  run.log('profile: 7B-shape 2L fp16 decode, batch 1, ctx 128 (top operators by total time):');
  run.profile = (await attempt(run, 'profile', () => profileDecode(run.target, args.outDir!, args.threads, run.log))) ?? [];
}

/** The closing table: errors, correctness, bandwidth, then one row per speed figure scaled to 32 layers. */
function summaryLines(run: CheckRun): string[] {
  const lines = [
    '',
    `== device check, ep ${run.args.ep}, runtime ${run.args.runtime}${run.target.cudaGraphs ? ', CUDA graphs' : ''}, ${new Date().toISOString()}, ${((performance.now() - run.started) / 1000).toFixed(0)} s ==`,
    ...run.errors,
    ...run.correctness.map(
      (c) =>
        `correctness ${c.dtype}: max rel err ${c.maxRelativeError.toExponential(2)} (< ${c.target}) ${c.pass ? 'PASS' : 'FAIL'}, greedy ids ${c.sameGreedyIds ? 'equal' : 'DIFFER'}`,
    ),
    `copy bandwidth ${(run.bandwidth.bytesPerSecond / 1e9).toFixed(1)} GB/s (read + write)`,
    'model                 | phase   |  ctx | batch |   tok/s | at 32 layers | floor tok/s | % floor',
  ];
  for (const { label, rows, scale, floorTokensPerSecond } of run.speed) {
    for (const row of rows.filter((r) => r.phase !== 'load')) {
      const scaled = row.value === null ? null : row.value * scale;
      const ofFloor = scaled !== null && row.phase === 'decode' && row.batch === 1 ? `${((100 * scaled) / floorTokensPerSecond).toFixed(0)}%` : '';
      lines.push(
        `${label.padEnd(21)} | ${row.phase.padEnd(7)} | ${String(row.context).padStart(4)} | ${String(row.batch).padStart(5)} | ${format(row.value).padStart(7)} | ${format(scale === 1 ? null : scaled).padStart(12)} | ${(row.batch === 1 && row.phase === 'decode' ? format(floorTokensPerSecond) : '').padStart(11)} | ${ofFloor}${row.note ? ` ${row.note}` : ''}`,
      );
    }
  }
  for (const { label, rows } of run.speed)
    lines.push(`${label}: graph build + session start ${format(rows[0].value)} s${rows[0].note ? ` (${rows[0].note})` : ''}`);
  return lines;
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(USAGE);
    return;
  }
  const run = startRun(parseArgs(process.argv.slice(2)));
  const { args } = run;
  if (args.nativeAddon) useNativeAddonAt(args.nativeAddon);
  run.log(
    `device check: ep ${args.ep}, runtime ${args.runtime}${run.target.cudaGraphs ? ', CUDA graphs' : ''}${args.quick ? ' (quick)' : ''}${args.local ? ' (local software driver: not a speed figure)' : ''}, budget ${args.budgetSeconds} s`,
  );
  await checkCorrectnessParts(run);
  save(run, false);
  await measureBandwidthPart(run);
  await measureSpeedParts(run);
  await profilePart(run);
  fs.rmSync(run.graphCacheDir, { recursive: true, force: true });
  const lines = summaryLines(run);
  run.log(lines.join('\n'));
  save(run, true);
  if (args.outDir) fs.writeFileSync(path.join(args.outDir, 'check-table.txt'), `${lines.join('\n')}\n`);
  if (run.errors.length > 0 || run.correctness.length < correctnessFormats(run.target).length || run.correctness.some((c) => !c.pass)) process.exitCode = 1;
}

await main();
