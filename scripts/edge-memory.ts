// `npm run soak -- --heap DIR`: after each wave, the edge worker's live JS heap (a heap snapshot, which
// collects garbage first) beside the resident memory of each edge process (wrangler's node, its workerd
// processes), and the same while the stack idles after the waves (--idle); the first and the last wave's snapshots stay in DIR, and which constructors grew between them.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { slope, treeRss } from './soak-probes';
import { WorkerHeap, heapGrowth, liveMb } from './worker-heap';

/** What an edge process is, from its command line: the worker's runtime is the workerd with the inspector. */
function roleOf(pid: number, name: string): string {
  let args = '';
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {}
  if (name === 'workerd') return args.includes('--inspector-addr') ? 'workerd(worker)' : 'workerd(wrangler proxy)';
  if (name === 'node') return args.includes('wrangler-dist') ? 'node(wrangler)' : 'node(launcher)';
  return name;
}

function rssLine(processes: { label: string; mb: number }[]): string {
  return processes.map((p) => `${p.label} ${p.mb.toFixed(0)}`).join(', ');
}

export class EdgeMemory {
  private readonly heapLive: number[] = [];
  private readonly rssByProcess = new Map<string, number[]>();
  private firstSnapshot: Awaited<ReturnType<WorkerHeap['snapshot']>> | null = null;
  private lastSnapshot: Awaited<ReturnType<WorkerHeap['snapshot']>> | null = null;
  private heap: WorkerHeap | null = null;

  constructor(
    private readonly edgePid: number,
    private readonly inspectorPort: number,
    private readonly dir: string,
  ) {}

  async afterWave(wave: number): Promise<string> {
    this.heap ??= await WorkerHeap.open(this.inspectorPort);
    const snapshot = await this.heap.snapshot(path.join(this.dir, wave === 1 ? 'edge-wave-1.heapsnapshot' : 'edge-last-wave.heapsnapshot'));
    this.firstSnapshot ??= snapshot;
    this.lastSnapshot = snapshot;
    this.heapLive.push(liveMb(snapshot));
    const processes = this.processes();
    for (const p of processes) this.rssByProcess.set(p.label, [...(this.rssByProcess.get(p.label) ?? []), p.mb]);
    return `      edge heap ${this.heapLive.at(-1)!.toFixed(1)} MB live (${await this.usage()}); RSS ${rssLine(processes)} MB`;
  }

  /** One sample while the stack is idle after the waves: kept apart from the per-wave slopes. */
  async idleSample(secondsIdle: number): Promise<string> {
    this.heap ??= await WorkerHeap.open(this.inspectorPort);
    const snapshot = await this.heap.snapshot(path.join(this.dir, 'edge-idle.heapsnapshot'));
    return `idle ${String(secondsIdle).padStart(4)} s: edge heap ${liveMb(snapshot).toFixed(1)} MB live (${await this.usage()}); RSS ${rssLine(this.processes())} MB`;
  }

  private processes(): { label: string; mb: number }[] {
    return treeRss(this.edgePid).map((p) => ({ ...p, label: roleOf(p.pid, p.name) }));
  }

  private async usage(): Promise<string> {
    const heap = await this.heap!.usageMb();
    return `${heap.used.toFixed(1)} used / ${heap.total.toFixed(1)} MB`;
  }

  /** The report lines: slopes, and the growth from the first wave's snapshot to the last one's. */
  finish(): string[] {
    this.heap?.close();
    const perWave = (values: number[]) =>
      `${slope(values) >= 0 ? '+' : ''}${slope(values).toFixed(2)} MB/wave (${values[0]?.toFixed(1)} -> ${values.at(-1)?.toFixed(1)})`;
    return [
      `edge worker live heap (snapshot): ${perWave(this.heapLive)}`,
      ...[...this.rssByProcess].map(([label, values]) => `edge process ${label} RSS: ${perWave(values)}`),
      `edge heap growth, wave 1 -> last (snapshots in ${this.dir}):`,
      ...(this.firstSnapshot && this.lastSnapshot ? heapGrowth(this.firstSnapshot, this.lastSnapshot).map((line) => `  ${line}`) : []),
    ];
  }
}
