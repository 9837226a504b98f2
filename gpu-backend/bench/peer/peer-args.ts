// bench:peer's command line: usage text, parsing, and checks that name the flag (a bad value would
// otherwise surface as a NaN loop bound or a crash after minutes of model preparation).

import os from 'node:os';
import { parseArgs } from 'node:util';
import { INT4_BLOCK_SIZE } from '../../src/model/graph/quantize-int4';

export const USAGE = `usage: npm run bench:peer -- [options]
  --formats fp32,int4     weight formats (ours fp32 vs llama.cpp F32, ours int4 vs Q4_0)
  --rounds 3              rounds per format; each runs both engines, order alternating (A B, B A, ...)
  --threads 2             threads for both engines (default: CPU cores)
  --decode-tokens 64      greedy tokens per decode measurement
  --long-context 2000     the long prefill and the context of the long decode
  --batches 4,8           sequences decoding together for the aggregate figures
  --shape 125m|7b         125m: the ~125M bench model; 7b: a random Mistral-7B-shaped bf16 checkpoint
                          (14.5 GB, generated once into --model-dir, default ~/.cache/mistral-edge-serve/bench-7b)
  --model-dir DIR         checkpoint folder (default .models/bench-125m for 125m)
  --int4-block-size 64    our MatMulNBits block size (default the engine's; 64 with fp32 scales stores Q4_0's 0.5625 bytes/weight)
  --kv-cache-dtype auto   our KV cache type (llama.cpp keeps its default f16 cache)
  --runtime js|native     our session (default: the backend's choice for the model, runtime-choice.ts)
  --chunk-size N          our prefill chunk (default: the engine's, on the CPU min(window, 256); llama.cpp's batch is 512)
  --max-other-cpu 0.15    share of all cores other processes may use during a round before it is marked noisy
  --wait-quiet 120        seconds to wait before each round for the CPU to be that quiet
  --strict                exit 1 instead of reporting when any round was noisy
  --charts DIR            also write DIR/peer-<shape>.svg and DIR/peer-<shape>.json
  --out bench-results     where the raw JSON goes
  --render A.json[,B.json] measure nothing: print the tables of saved runs (their formats merged, later files
                          win) and, with --charts, draw them; only rounds with others' CPU <= --max-other-cpu
                          count when any such round exists
llama.cpp is installed on demand into gpu-backend/bench/peer/node_modules (npm ci there, prebuilt binaries only)
and measured twice: from a C++ loop (llama-loop.cc, built there with g++ against the same library) and through
node-llama-cpp.`;

const { values: parsed } = parseArgs({
  options: {
    formats: { type: 'string', default: 'fp32,int4' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: String(os.availableParallelism()) },
    'decode-tokens': { type: 'string', default: '64' },
    'long-context': { type: 'string', default: '2000' },
    batches: { type: 'string', default: '4,8' },
    shape: { type: 'string', default: '125m' },
    'model-dir': { type: 'string' },
    'max-other-cpu': { type: 'string', default: '0.15' },
    'int4-block-size': { type: 'string', default: String(INT4_BLOCK_SIZE) },
    'kv-cache-dtype': { type: 'string', default: 'auto' },
    runtime: { type: 'string' },
    'chunk-size': { type: 'string' },
    'wait-quiet': { type: 'string', default: '120' },
    strict: { type: 'boolean', default: false },
    charts: { type: 'string' },
    out: { type: 'string', default: 'bench-results' },
    render: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

/** A usage error: one line naming the flag, exit 2, no stack trace. */
function fail(message: string): never {
  console.error(`bench:peer: ${message} (see --help)`);
  process.exit(2);
}

function positiveIntegers(flag: 'rounds' | 'threads' | 'decode-tokens' | 'long-context' | 'batches' | 'int4-block-size' | 'chunk-size'): void {
  const given = parsed[flag];
  if (given === undefined) return;
  for (const part of given.split(',')) {
    if (!/^[1-9][0-9]*$/.test(part.trim())) fail(`--${flag}: expected a positive integer${flag === 'batches' ? ' list' : ''}, got "${parsed[flag]}"`);
  }
}

if (!parsed.help && !parsed.render) {
  for (const flag of ['rounds', 'threads', 'decode-tokens', 'long-context', 'batches', 'int4-block-size', 'chunk-size'] as const) positiveIntegers(flag);
  const share = Number(parsed['max-other-cpu']);
  if (!(share >= 0 && share <= 1)) fail(`--max-other-cpu: expected a share between 0 and 1, got "${parsed['max-other-cpu']}"`);
  if (!['auto', 'fp32', 'fp16'].includes(parsed['kv-cache-dtype'])) fail(`--kv-cache-dtype: expected auto, fp32 or fp16, got "${parsed['kv-cache-dtype']}"`);
  if (parsed.runtime !== undefined && parsed.runtime !== 'js' && parsed.runtime !== 'native') fail(`--runtime: expected js or native, got "${parsed.runtime}"`);
  if (!(Number(parsed['wait-quiet']) >= 0)) fail(`--wait-quiet: expected seconds >= 0, got "${parsed['wait-quiet']}"`);
}

export const values = parsed;
