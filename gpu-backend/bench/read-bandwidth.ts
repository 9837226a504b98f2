// Memory read bandwidth of this machine, measured from Node: the floor decode speed is judged against.

import { Worker } from 'node:worker_threads';

/**
 * Read bandwidth, three ways, best of 5 each: a JS sum over a 256 MiB Float32Array (4 accumulators;
 * JIT-bound, a low estimate), Buffer.compare of two equal 128 MiB buffers (native memcmp reads both), and
 * the same memcmp on `parallel` worker threads at once (the engine's thread count: a floor for an engine
 * using N cores must allow N cores' bandwidth).
 */
export async function measureReadBandwidth(parallel: number): Promise<{ jsSum: number; memcmp: number; parallelMemcmp: number }> {
  const array = new Float32Array(64 * 2 ** 20).fill(1);
  let jsSum = 0;
  let sink = 0;
  for (let run = 0; run < 5; run++) {
    const start = process.hrtime.bigint();
    let a = 0;
    let b = 0;
    let c = 0;
    let d = 0;
    for (let i = 0; i < array.length; i += 4) {
      a += array[i];
      b += array[i + 1];
      c += array[i + 2];
      d += array[i + 3];
    }
    sink += a + b + c + d;
    jsSum = Math.max(jsSum, array.byteLength / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  const left = Buffer.alloc(128 * 2 ** 20, 7);
  const right = Buffer.alloc(128 * 2 ** 20, 7);
  let memcmp = 0;
  for (let run = 0; run < 5; run++) {
    const start = process.hrtime.bigint();
    sink += Buffer.compare(left, right);
    memcmp = Math.max(memcmp, (2 * left.byteLength) / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  if (sink === 42) console.log(''); // keeps both loops observable
  return { jsSum, memcmp, parallelMemcmp: parallel > 1 ? await parallelMemcmpBandwidth(parallel) : memcmp };
}

/** Workers each compare their own two 128 MiB buffers on the main thread's signal; bytes / wall time. */
async function parallelMemcmpBandwidth(parallel: number): Promise<number> {
  const source = `
    const { parentPort } = require('node:worker_threads');
    const left = Buffer.alloc(128 * 2 ** 20, 7);
    const right = Buffer.alloc(128 * 2 ** 20, 7);
    parentPort.on('message', () => parentPort.postMessage(Buffer.compare(left, right)));
    parentPort.postMessage('ready');`;
  const workers = Array.from({ length: parallel }, () => new Worker(source, { eval: true }));
  const next = (worker: Worker) => new Promise((resolve) => worker.once('message', resolve));
  await Promise.all(workers.map(next));
  let best = 0;
  for (let run = 0; run < 5; run++) {
    const start = process.hrtime.bigint();
    const done = workers.map(next);
    for (const worker of workers) worker.postMessage('go');
    await Promise.all(done);
    best = Math.max(best, (parallel * 2 * 128 * 2 ** 20) / (Number(process.hrtime.bigint() - start) / 1e9));
  }
  await Promise.all(workers.map((worker) => worker.terminate()));
  return best;
}
