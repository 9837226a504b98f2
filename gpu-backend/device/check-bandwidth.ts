// Copy bandwidth as the execution provider sees it, for the decode floor: a one-node graph (y = -x over
// 512 MiB, or less with --quick) run on the provider; bytes moved = read + written. On WebGPU the output
// stays on the device and is fed back, so no host transfer is timed; a 1-value host output syncs the run.

import { GraphBuilder } from '../src/model/graph/graph-builder';
import { concatChunks, encodeOnnxModel } from '../src/model/graph/onnx-proto-writer';
import type { ExecutionProvider } from '../src/model/runtime/engine-types';
import { type DeviceTensor, OrtSession } from '../src/model/runtime/ort-session';

export interface BandwidthResult {
  /** Bytes read + written per second. */
  bytesPerSecond: number;
  bufferBytes: number;
  runs: number;
}

function copyGraph(): Uint8Array {
  const g = new GraphBuilder(null);
  const x = g.input('x', 'float32', ['n']);
  g.nodes.push({ opType: 'Neg', name: 'neg', inputs: [x], outputs: ['y'], attributes: {} });
  g.nodes.push({ opType: 'Slice', name: 'probe', inputs: ['y', g.int64([0]), g.int64([1])], outputs: ['probe'], attributes: {} });
  g.output('y', 'float32', ['n']);
  g.output('probe', 'float32', [1]);
  return concatChunks(encodeOnnxModel(g.build('bandwidth')));
}

export async function measureCopyBandwidth(executionProvider: ExecutionProvider, bufferBytes: number, intraOpThreads: number): Promise<BandwidthResult> {
  const onDevice = executionProvider === 'webgpu';
  const session = await OrtSession.create(copyGraph(), { executionProvider, intraOpThreads, deviceOutputs: onDevice ? ['y'] : [] });
  const n = bufferBytes / 4;
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
    return { bytesPerSecond: (2 * bufferBytes * runs) / seconds, bufferBytes, runs };
  } finally {
    (deviceInput as DeviceTensor | null)?.dispose();
    await session.release();
  }
}
