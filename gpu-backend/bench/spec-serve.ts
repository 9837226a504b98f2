// `npm run bench:serve -- --speculative`: end-to-end decode tokens/s with prompt-lookup drafts off and
// on (--spec-tokens 4), through the worker-thread serving stack, one stream, greedy, on two workloads:
// "repeating": a 32-id phrase repeated 8 times, so drafts always exist (how many the model keeps is
// its own business: the random bench model has no reason to copy), "non-repeating": distinct ids, and
// "copying": the model's own greedy text after BOS, then its first 8 ids again, which a trained model
// (--checkpoint, e.g. stories260k) continues by copying. Runs alternate off/on so machine noise hits
// both. Prints figures; asserts nothing.

import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_SAMPLING, type GenerateEvent } from '../../shared/protocol';
import { onnxCacheDirFrom } from '../src/config';
import type { SessionRuntime } from '../src/model/runtime/engine-types';
import { GenerationClient } from '../src/server/generation-client';
import { formatSpread, median, spread } from '../../shared/stats';

const SPEC_TOKENS = 4;

/** The fixed workloads, ids below the model's vocabulary (3 and up: clear of BOS, EOS and UNK). */
function fixedWorkloads(vocabSize: number): Record<string, number[]> {
  const span = Math.min(31_000, vocabSize - 3);
  return {
    repeating: Array.from({ length: 256 }, (_, i) => 3 + (((i % 32) * 7919) % span)),
    'non-repeating': Array.from({ length: 256 }, (_, i) => 3 + ((i * 7919 + 104_729) % span)),
  };
}

/** One greedy stream of `maxTokens` after `tokenIds`; `onIds` sees each token event's ids as they arrive. */
function greedyStream(client: GenerationClient, requestId: string, tokenIds: number[], maxTokens: number, onIds: (ids: number[]) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const outcome = client.submit(
      { requestId, tokenIds, stream: true, sampling: { ...DEFAULT_SAMPLING, temperature: 0, ignoreEos: true, maxTokens } },
      (event: GenerateEvent) => {
        if (event.event === 'token') onIds(event.data.tokenIds);
        else if (event.event === 'end') resolve();
        else if (event.event === 'error') reject(new Error(event.data.message));
      },
    );
    if (!outcome.ok) reject(new Error(outcome.message));
  });
}

/** BOS, the model's own greedy continuation of it, then that text's first 8 ids again. */
async function copyingWorkload(client: GenerationClient, length: number): Promise<number[]> {
  const text: number[] = [];
  await greedyStream(client, 'copy-source', [1], length, (ids) => text.push(...ids));
  return [1, ...text, ...text.slice(0, 8)];
}

/** Decode tokens/s of one greedy stream after its first token. */
async function decodeRate(client: GenerationClient, tokenIds: number[], maxTokens: number): Promise<number> {
  const times: number[] = [];
  await greedyStream(client, 'spec', tokenIds, maxTokens, (ids) => {
    for (const _ of ids) times.push(performance.now());
  });
  return ((times.length - 1) / (times.at(-1)! - times[0])) * 1000;
}

export async function benchSpeculativeServe(modelDir: string, threads: number, decodeTokens: number, runtime: SessionRuntime, repeats = 3): Promise<void> {
  const { vocab_size: vocabSize, max_position_embeddings: maxPositions } = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as {
    vocab_size: number;
    max_position_embeddings: number;
  };
  const clientFor = (speculativeTokens: number) =>
    GenerationClient.inWorker({
      engine: {
        kind: 'onnx',
        options: {
          modelDir,
          dtype: 'fp32',
          executionProvider: 'cpu',
          runtime,
          intraOpThreads: threads,
          maxSequences: 4,
          maxModelLen: Math.min(1024, maxPositions),
          onnxCacheDir: onnxCacheDirFrom(process.env),
          speculativeTokens,
        },
      },
      limits: { maxRunning: 2, prefixCacheSize: 0, speculativeTokens },
    });
  const rates: Record<string, { off: number[]; on: number[] }> = {};
  const workloads = fixedWorkloads(vocabSize);
  let counts = '';
  for (let r = 0; r < repeats; r++) {
    // Which mode goes first alternates: the first client of a repeat pays for the machine's warm-up.
    for (const mode of r % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
      const client = clientFor(mode === 'on' ? SPEC_TOKENS : 0);
      try {
        await client.whenReady();
        workloads.copying ??= await copyingWorkload(client, 248);
        for (const [name, prompt] of Object.entries(workloads)) {
          rates[name] ??= { off: [], on: [] };
          rates[name][mode].push(await decodeRate(client, prompt, decodeTokens));
        }
        const metrics = client.metrics.render();
        if (mode === 'on') counts = (metrics.match(/backend_speculative_\w+_total \d+/g) ?? []).join(', ');
      } finally {
        await client.close();
      }
    }
  }
  const show = (values: number[]) => formatSpread(spread(values), (x) => x.toFixed(1));
  console.log(
    `speculative (ngram, ${SPEC_TOKENS} drafts), 1 greedy stream, ${decodeTokens} tokens, fp32, ${runtime} session, ${threads} threads, ${repeats} repeats: median tok/s (min-max)`,
  );
  for (const [name, { off, on }] of Object.entries(rates)) {
    console.log(`  ${name}: off ${show(off)}, on ${show(on)}, on/off ${(median(on) / median(off)).toFixed(2)}`);
  }
  console.log(`  last 'on' run, all workloads: ${counts}`);
}
