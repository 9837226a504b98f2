// The device check (issue 6), run by check.sh on a GPU machine or here with --ep cpu: a) logits of the
// provider vs the CPU on one generated model, fp32 and fp16; b) prefill/decode speed of generated
// Mistral-shaped models; c) the bandwidth floor. Prints one table at the end and writes check.json.
//
//   check.ts [--ep webgpu|cpu|cuda] [--runtime js|native] [--cuda-graphs on|off|both] [--native-addon FILE] [--quick] [--local] [--out DIR] [--budget-s 330] [--layers-7b 4] [--threads N] [--no-profile]
// A full run ends with a per-operator profile of 7B-shape decode (webgpu) when 45 s of budget remain.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { weightBytesPerToken } from '../src/model/graph/weight-bytes';
import { benchConfig } from './bench-weights';
import { measureCopyBandwidth } from './check-bandwidth';
import { type CorrectnessResult, checkCorrectness } from './check-correctness';
import { type OpTime, profileDecode } from './check-profile';
import { useNativeAddonAt } from '../src/model/runtime/native-session';
import { type CheckArgs, USAGE, capturesGraphs, correctnessFormats, parseArgs, speedPlans } from './check-plan';
import { type DeviceTarget, type SpeedPlan, type SpeedRow, measureSpeed } from './check-speed';

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
