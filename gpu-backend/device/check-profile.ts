// Where decode time goes (--profile): a short 7B-shape fp16 decode run with ONNX Runtime's profiler on
// (resident-cache sessions, the engine's profilePrefix; RESIDENT_KV_PROFILE on the backend), summed per operator type from the profile JSON.

import fs from 'node:fs';
import path from 'node:path';
import { type DeviceTarget, measureSpeed } from './check-speed';

export interface OpTime {
  opType: string;
  provider: string;
  milliseconds: number;
  calls: number;
}

interface ProfileEvent {
  cat?: string;
  dur?: number;
  args?: { op_name?: string; provider?: string };
}

export function summarizeProfile(events: ProfileEvent[]): OpTime[] {
  const byOp = new Map<string, OpTime>();
  for (const event of events) {
    if (event.cat !== 'Node' || !event.args?.op_name || event.dur === undefined) continue;
    const key = `${event.args.op_name}@${event.args.provider ?? '?'}`;
    const entry = byOp.get(key) ?? { opType: event.args.op_name, provider: event.args.provider ?? '?', milliseconds: 0, calls: 0 };
    entry.milliseconds += event.dur / 1000;
    entry.calls++;
    byOp.set(key, entry);
  }
  return [...byOp.values()].sort((a, b) => b.milliseconds - a.milliseconds);
}

export async function profileDecode(target: DeviceTarget, outDir: string, threads: number, log: (line: string) => void): Promise<OpTime[]> {
  const prefix = path.join(outDir, 'ort-profile');
  const plan = { shape: '7b' as const, layerCount: 2, dtype: 'fp16' as const, prefillTokens: 128, contexts: [128], batches: [1], decodeSteps: 8 };
  await measureSpeed(plan, target, threads, { remaining: () => 60 }, (line) => log(`  ${line.trim()}`), prefix);
  const file = fs
    .readdirSync(outDir)
    .filter((name) => name.startsWith('ort-profile') && name.endsWith('.json'))
    .sort()
    .pop();
  if (!file) {
    log('  no profile written (the resident cache is used with --ep webgpu only)');
    return [];
  }
  const ops = summarizeProfile(JSON.parse(fs.readFileSync(path.join(outDir, file), 'utf-8')) as ProfileEvent[]);
  const total = ops.reduce((sum, op) => sum + op.milliseconds, 0);
  for (const op of ops.slice(0, 12))
    log(
      `  ${op.opType.padEnd(28)} ${op.provider.padEnd(24)} ${op.milliseconds.toFixed(1).padStart(9)} ms ${((100 * op.milliseconds) / total).toFixed(1).padStart(5)}% ${op.calls} calls`,
    );
  return ops;
}
