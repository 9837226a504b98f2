// Copy bandwidth as the execution provider sees it, for the decode floor: a chain of Neg nodes (y = -x,
// `links` times) over one buffer, run on the provider; bytes moved = read + written by every link. On
// WebGPU the output stays on the device and is fed back, so no host transfer is timed; a 1-value host
// output syncs the run. WebGPU runs 16 links over a quarter of the buffer: one link per run measured
// the fixed cost of a run (a fresh output buffer, submit, sync), not its memory (docs/device/README.md);
// the links' intermediate buffers come from the provider's cache after the warm-up. Under the native
// session (--runtime native) the buffer is its cache tensor on the device, negated in place by the last
// link, which is how a decode step reads and writes the KV cache there.

import { GraphBuilder } from '../src/model/graph/graph-builder';
import { concatChunks, encodeOnnxModel } from '../src/model/graph/onnx-proto-writer';
import type { ExecutionProvider } from '../src/model/runtime/engine-types';
import { NativeSession } from '../src/model/runtime/native-session';
import { type DeviceTensor, OrtSession } from '../src/model/runtime/ort-session';
import type { DeviceTarget } from './check-speed';

export interface BandwidthResult {
  /** Bytes read + written per second. */
  bytesPerSecond: number;
  bufferBytes: number;
  runs: number;
  /** Neg nodes per run, each reading and writing the buffer once. */
  links: number;
}

const SLOT_FLOATS = 1024;
const RUNS = 6;

/** `links` chained Neg nodes from `input`, the last one writing `output`. */
function negChain(g: GraphBuilder, input: string, output: string, links: number): void {
  let previous = input;
  for (let i = 0; i < links; i++) {
    const next = i === links - 1 ? output : `neg_${i}`;
    g.nodes.push({ opType: 'Neg', name: `neg_${i}`, inputs: [previous], outputs: [next], attributes: {} });
    previous = next;
  }
}

/** Two untimed runs (upload, warm-up), then RUNS timed: bytes read + written per second. */
async function timeRuns(runOnce: () => Promise<void>, bytes: number, links: number): Promise<BandwidthResult> {
  await runOnce();
  await runOnce();
  const start = performance.now();
  for (let i = 0; i < RUNS; i++) await runOnce();
  const seconds = (performance.now() - start) / 1000;
  return { bytesPerSecond: (2 * bytes * links * RUNS) / seconds, bufferBytes: bytes, runs: RUNS, links };
}

function copyGraph(links: number): Uint8Array {
  const g = new GraphBuilder(null);
  negChain(g, g.input('x', 'float32', ['n']), 'y', links);
  g.nodes.push({ opType: 'Slice', name: 'probe', inputs: ['y', g.int64([0]), g.int64([1])], outputs: ['probe'], attributes: {} });
  g.output('y', 'float32', ['n']);
  g.output('probe', 'float32', [1]);
  return concatChunks(encodeOnnxModel(g.build('bandwidth')));
}

/** `links` Neg nodes from the cache tensor `past` back into it (`present`, the same buffer); a 1-value feed is the logits. */
function inPlaceCopyGraph(links: number): Uint8Array {
  const g = new GraphBuilder(null);
  negChain(g, g.input('past', 'float32', ['rows', 1, 'slots', SLOT_FLOATS]), 'present', links);
  g.input('probe', 'float32', [1, 1]);
  g.nodes.push({ opType: 'Identity', name: 'logits', inputs: ['probe'], outputs: ['logits'], attributes: {} });
  g.output('present', 'float32', ['rows', 1, 'slots', SLOT_FLOATS]);
  g.output('logits', 'float32', [1, 1]);
  return concatChunks(encodeOnnxModel(g.build('bandwidth-in-place')));
}

async function measureNative(executionProvider: ExecutionProvider, bufferBytes: number, intraOpThreads: number): Promise<BandwidthResult> {
  if (executionProvider === 'webgpu') throw new Error('the native session runs the cpu or cuda provider, not webgpu');
  const links = executionProvider === 'cuda' ? 16 : 1;
  const bytes = executionProvider === 'cuda' ? bufferBytes / 4 : bufferBytes;
  const session = NativeSession.create(inPlaceCopyGraph(links), { provider: executionProvider, intraOpThreads });
  try {
    const slots = bytes / 4 / SLOT_FLOATS;
    session.allocateCache({ pastNames: ['past'], presentNames: ['present'], rows: 1, keyValueHeads: 1, slots, headDim: SLOT_FLOATS, elementType: 'float32' });
    const step = {
      feeds: [{ name: 'probe', type: 'float32' as const, data: new Float32Array(1), dims: [1, 1] }],
      logitsName: 'logits',
      logits: new Float32Array(1),
      logitsRows: 1,
      vocab: 1,
      firstRow: 0,
      batch: 1,
    };
    return await timeRuns(() => session.run(step), bytes, links);
  } finally {
    session.release();
  }
}

export async function measureCopyBandwidth(
  { executionProvider, runtime }: DeviceTarget,
  bufferBytes: number,
  intraOpThreads: number,
): Promise<BandwidthResult> {
  if (runtime === 'native') return measureNative(executionProvider, bufferBytes, intraOpThreads);
  const onDevice = executionProvider === 'webgpu';
  const links = onDevice ? 16 : 1;
  const bytes = onDevice ? bufferBytes / 4 : bufferBytes;
  const session = await OrtSession.create(copyGraph(links), { executionProvider, intraOpThreads, deviceOutputs: onDevice ? ['y'] : [] });
  const n = bytes / 4;
  const host = new Float32Array(n).fill(1);
  let deviceInput: DeviceTensor | null = null;
  const runOnce = async (): Promise<void> => {
    if (!onDevice) {
      await session.run({ x: { type: 'float32', data: host, dims: [n] } }, ['probe']);
      return;
    }
    const feed = deviceInput ?? { type: 'float32' as const, data: host, dims: [n] };
    const result = await session.runWithDevice({ x: feed });
    deviceInput?.dispose();
    deviceInput = result.device.y;
  };
  try {
    return await timeRuns(runOnce, bytes, links);
  } finally {
    (deviceInput as DeviceTensor | null)?.dispose();
    await session.release();
  }
}
