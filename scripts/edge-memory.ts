// `npm run soak -- --heap DIR`: after each wave, the edge worker's live JS heap (a heap snapshot, which
// collects garbage first) beside the resident memory of each edge process (wrangler's node, its workerd
// processes), and the same while the stack idles after the waves (--idle); the first and the last wave's snapshots stay in DIR, and which constructors grew between them.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { slope, treeRss } from './soak-probes';
import { WorkerHeap, heapGrowth, liveMb, type HeapCounts } from './worker-heap';

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
  private firstSnapshot: HeapCounts | null = null;
  private lastSnapshot: HeapCounts | null = null;
  private heap: WorkerHeap | null = null;
  private readonly pidOf = new Map<string, number>();

  constructor(
    private readonly edgePid: number,
    private readonly inspectorPort: number,
    /** Where heap snapshots go; null: resident memory only, the inspector left alone (its traffic runs through wrangler). */
    private readonly dir: string | null,
  ) {}

  async afterWave(wave: number): Promise<string> {
    // Resident memory is read before the snapshot, whose traffic through wrangler's inspector proxy costs memory there.
    const processes = this.processes();
    for (const p of processes) this.rssByProcess.set(p.label, [...(this.rssByProcess.get(p.label) ?? []), p.mb]);
    const heap = await this.heapLine(wave === 1 ? 'edge-wave-1.heapsnapshot' : 'edge-last-wave.heapsnapshot', (snapshot) => {
      this.firstSnapshot ??= snapshot;
      this.lastSnapshot = snapshot;
      this.heapLive.push(liveMb(snapshot));
    });
    return `      ${heap}RSS ${rssLine(processes)} MB`;
  }

  /** One sample while the stack is idle after the waves: kept apart from the per-wave slopes. */
  async idleSample(secondsIdle: number): Promise<string> {
    const processes = this.processes();
    return `idle ${String(secondsIdle).padStart(4)} s: ${await this.heapLine('edge-idle.heapsnapshot', () => {})}RSS ${rssLine(processes)} MB`;
  }

  /** The worker's live heap from a snapshot written to `file` in dir (none without dir). */
  private async heapLine(file: string, keep: (snapshot: HeapCounts) => void): Promise<string> {
    if (this.dir === null) return '';
    this.heap ??= await WorkerHeap.open(this.inspectorPort);
    const snapshot = await this.heap.snapshot(path.join(this.dir, file));
    keep(snapshot);
    return `edge heap ${liveMb(snapshot).toFixed(1)} MB live (${await this.usage()}); `;
  }

  /** The edge's processes; a workerd seen before under another pid is marked restarted (wrangler restarts it on a reload). */
  private processes(): { label: string; mb: number }[] {
    return treeRss(this.edgePid).map((p) => {
      const role = roleOf(p.pid, p.name);
      if (!role.startsWith('workerd')) return { ...p, label: role };
      const before = this.pidOf.get(role);
      this.pidOf.set(role, p.pid);
      return { ...p, label: before !== undefined && before !== p.pid ? `${role} (restarted)` : role };
    });
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
    const rss = [...this.rssByProcess].map(([label, values]) => `edge process ${label} RSS: ${perWave(values)}`);
    if (this.dir === null) return rss;
    return [
      `edge worker live heap (snapshot): ${perWave(this.heapLive)}`,
      ...rss,
      `edge heap growth, wave 1 -> last (snapshots in ${this.dir}):`,
      ...(this.firstSnapshot && this.lastSnapshot ? heapGrowth(this.firstSnapshot, this.lastSnapshot).map((line) => `  ${line}`) : []),
    ];
  }
}
