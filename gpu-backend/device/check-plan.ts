// What a device check run measures (check.ts): its flags, and the plans they give: which models, formats,
// contexts and batches, with the rows beside the native CUDA figures (without CUDA graphs, the JS session).

import os from 'node:os';
import type { ExecutionProvider, SessionRuntime, WeightFormat } from '../src/model/runtime/engine-types';
import type { DeviceTarget, SpeedPlan } from './check-speed';

export interface CheckArgs {
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

export const USAGE = `Usage: check.ts [--ep webgpu|cpu|cuda] [--runtime js|native] [--cuda-graphs on|off|both] [--native-addon FILE]
                [--quick] [--local] [--out DIR] [--budget-s 330] [--layers-7b 4] [--threads N] [--no-profile]
The device check (on a GPU machine through check.sh, which unpacks the pack and passes --native-addon):
logits of the provider against the CPU engine, the copy-bandwidth floor, prefill and decode speed of
generated Mistral-shaped models. Prints a table; writes check.json and check-table.txt to --out (or $OUT).
--cuda-graphs (cuda, native): both (default) measures with CUDA graphs and adds decode rows without.
Exit 1 when a part failed or a correctness target was missed. --quick and --local use tiny models only.`;

export function parseArgs(argv: string[]): CheckArgs {
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
export const capturesGraphs = (args: CheckArgs) => args.ep === 'cuda' && args.runtime === 'native';

/** What to measure: the device run; --quick and --local shrink it to prove the machinery only. */
export function speedPlans(args: CheckArgs): PlanRun[] {
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
export function correctnessFormats(target: DeviceTarget): WeightFormat[] {
  return target.runtime === 'native' && target.executionProvider === 'cuda' ? ['fp16', 'int4'] : ['fp32', 'fp16'];
}
