// Copy bandwidth as the execution provider sees it, for the decode floor: a chain of Neg nodes (y = -x,
// `links` times) over one buffer, run on the provider; bytes moved = read + written by every link. On
// WebGPU the output stays on the device and is fed back, so no host transfer is timed; a 1-value host
// output syncs the run. WebGPU runs 16 links over a quarter of the buffer: one link per run measured
// the fixed cost of a run (a fresh output buffer, submit, sync), not its memory (docs/device/README.md);
// the links' intermediate buffers come from the provider's cache after the warm-up.

import { GraphBuilder } from '../src/model/graph/graph-builder';
import { concatChunks, encodeOnnxModel } from '../src/model/graph/onnx-proto-writer';
import type { ExecutionProvider } from '../src/model/runtime/engine-types';
import { type DeviceTensor, OrtSession } from '../src/model/runtime/ort-session';

export interface BandwidthResult {
  /** Bytes read + written per second. */
  bytesPerSecond: number;
  bufferBytes: number;
  runs: number;
  /** Neg nodes per run, each reading and writing the buffer once. */
  links: number;
}

function copyGraph(links: number): Uint8Array {
  const g = new GraphBuilder(null);
  let previous = g.input('x', 'float32', ['n']);
  for (let i = 0; i < links; i++) {
    const output = i === links - 1 ? 'y' : `neg_${i}`;
    g.nodes.push({ opType: 'Neg', name: `neg_${i}`, inputs: [previous], outputs: [output], attributes: {} });
    previous = output;
  }
  g.nodes.push({ opType: 'Slice', name: 'probe', inputs: ['y', g.int64([0]), g.int64([1])], outputs: ['probe'], attributes: {} });
  g.output('y', 'float32', ['n']);
  g.output('probe', 'float32', [1]);
  return concatChunks(encodeOnnxModel(g.build('bandwidth')));
}

export async function measureCopyBandwidth(executionProvider: ExecutionProvider, bufferBytes: number, intraOpThreads: number): Promise<BandwidthResult> {
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
    await runOnce(); // upload (WebGPU) and warm-up
    await runOnce();
    const runs = 6;
    const start = performance.now();
    for (let i = 0; i < runs; i++) await runOnce();
    const seconds = (performance.now() - start) / 1000;
    return { bytesPerSecond: (2 * bytes * links * runs) / seconds, bufferBytes: bytes, runs, links };
  } finally {
    (deviceInput as DeviceTensor | null)?.dispose();
    await session.release();
  }
}
