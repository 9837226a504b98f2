// The edge worker's JS heap under `wrangler dev`, read over its DevTools inspector: the used heap after a
// full GC, and heap snapshots with a count of objects by constructor, to tell our worker's memory from
// the runtime's (the RSS of wrangler + workerd includes both).

import { writeFileSync } from 'node:fs';
import { WebSocket } from 'undici';

const CALL_TIMEOUT_MS = 60_000;

interface Inspector {
  call(method: string, params?: object): Promise<Record<string, unknown>>;
  onEvent(method: string, listener: (params: Record<string, unknown>) => void): void;
  close(): void;
}

async function connect(inspectorPort: number): Promise<Inspector> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as { webSocketDebuggerUrl: string }[];
  if (targets.length === 0) throw new Error(`the inspector on port ${inspectorPort} lists no worker`);
  // wrangler's inspector proxy refuses a client that sends a User-Agent (undici does) without an allowed Origin.
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl, { headers: { origin: 'http://localhost' } });
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve());
    socket.addEventListener('error', () => reject(new Error(`could not open the inspector of port ${inspectorPort}`)));
  });
  let nextId = 1;
  const pending = new Map<number, { resolve: (result: Record<string, unknown>) => void; reject: (error: Error) => void }>();
  const listeners = new Map<string, (params: Record<string, unknown>) => void>();
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as {
      id?: number;
      method?: string;
      params?: Record<string, unknown>;
      result?: Record<string, unknown>;
      error?: { message: string };
    };
    if (message.id !== undefined) {
      const call = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) call?.reject(new Error(message.error.message));
      else call?.resolve(message.result ?? {});
    } else if (message.method) listeners.get(message.method)?.(message.params ?? {});
  });
  return {
    call: (method, params = {}) =>
      new Promise((resolve, reject) => {
        const id = nextId++;
        // workerd leaves some methods unanswered (HeapProfiler.collectGarbage): never wait on one forever.
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`the worker's inspector did not answer ${method} within ${CALL_TIMEOUT_MS / 1000} s`));
        }, CALL_TIMEOUT_MS);
        pending.set(id, {
          resolve: (result) => (clearTimeout(timer), resolve(result)),
          reject: (error) => (clearTimeout(timer), reject(error)),
        });
        socket.send(JSON.stringify({ id, method, params }));
      }),
    onEvent: (method, listener) => listeners.set(method, listener),
    close: () => socket.close(),
  };
}

/** One DevTools session with the worker (wrangler's inspector takes one client at a time). */
export class WorkerHeap {
  private constructor(private readonly inspector: Inspector) {}

  static async open(inspectorPort: number): Promise<WorkerHeap> {
    return new WorkerHeap(await connect(inspectorPort));
  }

  /** The isolate's used and total JS heap in MB, garbage included (workerd does not answer collectGarbage). */
  async usageMb(): Promise<{ used: number; total: number }> {
    const { usedSize, totalSize } = (await this.inspector.call('Runtime.getHeapUsage')) as { usedSize: number; totalSize: number };
    return { used: usedSize / 2 ** 20, total: totalSize / 2 ** 20 };
  }

  /** Writes a heap snapshot (V8 collects garbage first) to `file`; returns its objects counted by constructor. */
  async snapshot(file: string): Promise<HeapCounts> {
    const chunks: string[] = [];
    this.inspector.onEvent('HeapProfiler.addHeapSnapshotChunk', (params) => chunks.push(String(params.chunk)));
    await this.inspector.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    const text = chunks.join('');
    writeFileSync(file, text);
    return countByConstructor(JSON.parse(text));
  }

  close(): void {
    this.inspector.close();
  }
}

export type HeapCounts = Map<string, { count: number; bytes: number }>;

/** The live heap a snapshot holds, in MB. */
export function liveMb(counts: HeapCounts): number {
  let bytes = 0;
  for (const entry of counts.values()) bytes += entry.bytes;
  return bytes / 2 ** 20;
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

function countByConstructor(heap: HeapSnapshot): HeapCounts {
  const fields = heap.snapshot.meta.node_fields;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((field) => fields.indexOf(field));
  const types = heap.snapshot.meta.node_types[0];
  const counts = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < heap.nodes.length; i += fields.length) {
    const type = types[heap.nodes[i + typeAt]];
    const name = type === 'object' || type === 'closure' ? heap.strings[heap.nodes[i + nameAt]] : `(${type})`;
    const entry = counts.get(name) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += heap.nodes[i + sizeAt];
    counts.set(name, entry);
  }
  return counts;
}

/** The constructors whose retained count grew most from `before` to `after`. */
export function heapGrowth(before: HeapCounts, after: HeapCounts, top = 8): string[] {
  return [...after]
    .map(([name, { count, bytes }]) => ({ name, count: count - (before.get(name)?.count ?? 0), bytes: bytes - (before.get(name)?.bytes ?? 0) }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, top)
    .map(({ name, count, bytes }) => `${name}: ${count >= 0 ? '+' : ''}${count} objects, ${bytes >= 0 ? '+' : ''}${(bytes / 1024).toFixed(1)} KiB`);
}
