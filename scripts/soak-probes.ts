// What the soak measures between waves: the backend's Prometheus gauges, the resident memory of a process
// tree (wrangler's own process plus workerd), and the slope of a series (least squares).

import { readdirSync, readFileSync } from 'node:fs';

/** Gauges of the backend's /metrics, by sample name (labels included). */
export async function backendGauges(backendUrl: string, token: string): Promise<Map<string, number>> {
  const response = await fetch(`${backendUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`backend /metrics: HTTP ${response.status}`);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** Polls until `done(gauges)` holds or `timeoutMs` passes; returns the last gauges and whether it held. */
export async function settle(backendUrl: string, token: string, done: (gauges: Map<string, number>) => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const gauges = await backendGauges(backendUrl, token);
    if (done(gauges)) return { gauges, held: true };
    if (Date.now() > deadline) return { gauges, held: false };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function parentOf(pid: number): number | null {
  try {
    // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function rssKib(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** Resident memory of `root` and its descendants, each process named by its executable, in MB (Linux /proc; none elsewhere). */
export function treeRss(root: number): { pid: number; name: string; mb: number }[] {
  let pids: number[];
  try {
    pids = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .map(Number);
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const pid of pids) {
    const parent = parentOf(pid);
    if (parent !== null) children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  const tree: { pid: number; name: string; mb: number }[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    tree.push({ pid, name: commOf(pid), mb: rssKib(pid) / 1024 });
    stack.push(...(children.get(pid) ?? []));
  }
  return tree.sort((a, b) => a.pid - b.pid);
}

/** Resident set of `root` and all its descendants, in MB (Linux /proc; 0 elsewhere). */
export function treeRssMb(root: number): number {
  return treeRss(root).reduce((sum, process) => sum + process.mb, 0);
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Least-squares slope of `values` against their index (per wave). */
export function slope(values: number[]): number {
  const n = values.length;
  if (n < 2) return 0;
  const meanX = (n - 1) / 2;
  const meanY = values.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  values.forEach((y, x) => {
    num += (x - meanX) * (y - meanY);
    den += (x - meanX) ** 2;
  });
  return num / den;
}
